import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import type { KlingClient } from '../../src/kling/client.ts';
import type { KlingTask } from '../../src/kling/payload.ts';
import { createLogger } from '../../src/logger.ts';
import { requeueThrottled } from '../../src/tasks/budget.ts';
import { createTaskCommands } from '../../src/tasks/commands.ts';
import type { NormalizedOmniRequest } from '../../src/tasks/create-input.ts';
import { createTaskReads } from '../../src/tasks/reads.ts';
import { createTaskStateMachine } from '../../src/tasks/state.ts';
import { createTestDatabase } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/*
 * The upstream accepts a create while another attempt at the same task (a resend after its create
 * lease ran out) has been refused for load and put the task back in its queue. The acceptance
 * stands: the task is SUBMITTED with the accepted upstream id, out of the queue, holding its slot,
 * and no pass sends it again. (Found by an outside review: the one-statement acceptance left such
 * a task queued and PENDING.)
 */

const request: NormalizedOmniRequest = {
  prompt: 'accepted while requeued',
  modelName: 'kling-video-o1',
  mode: 'STD',
  aspectRatio: 'RATIO_16_9',
  durationSeconds: 5,
  referenceImages: [],
  elements: [],
  referenceVideos: [],
  externalTaskId: null,
  idempotencyKey: null,
  priority: 'NORMAL',
  cancelAfterSeconds: null,
};

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

describe('an acceptance of a task requeued meanwhile', () => {
  it('records the accepted task as SUBMITTED, out of the queue and holding its slot; nothing is sent again', async () => {
    const db = database.db;
    const tenantId = randomUUID();
    await db.execute(sql`insert into tenants (id, name) values (${tenantId}, 'Accepted')`);
    const creates: string[] = [];
    const upstream = {
      async createTask(body: { external_task_id?: string }): Promise<KlingTask> {
        const id = `upstream-${creates.length + 1}`;
        creates.push(id);
        const taskId = String(body.external_task_id);
        // The other attempt's refusal, between this attempt's send and its answer.
        const [row] = await queryRows<{ id: string }>(db, sql`select id from omni_tasks where id = ${taskId}`);
        await requeueThrottled(db, { id: row!.id } as never, {
          code: 'UPSTREAM_CONCURRENCY_LIMIT',
          message: '1303',
          retryAfterMs: 0,
          maxInFlight: 5,
        });
        return {
          taskId: id,
          externalTaskId: taskId,
          status: 'submitted',
          statusMessage: null,
          videos: [],
          finalUnitDeduction: null,
          createdAt: null,
          updatedAt: null,
          raw: { task_id: id },
        } as KlingTask;
      },
      async getTask() {
        return null;
      },
    } as unknown as KlingClient;
    const commands = createTaskCommands({
      db,
      upstream,
      state: createTaskStateMachine({ finalStateHooks: { onSucceeded: [], onFailed: [] } }),
      reads: createTaskReads(db),
      callbackUrl: () => null,
      taskDeadlineMinutes: 30,
      pendingRecheckSeconds: 30,
      logger: createLogger('silent'),
      maxInFlight: 5,
    } as never);
    const created = await commands.create({ tenantId, createsPerMinute: null }, request);
    expect(created).toMatchObject({ status: 'SUBMITTED', upstreamTaskId: 'upstream-1', queuedAt: null });
    const [slots] = await queryRows<{ held: number; queued: number }>(
      db,
      sql`select coalesce(sum(held), 0)::int as held, coalesce(sum(queued), 0)::int as queued from upstream_slot_counts where tenant_id = ${tenantId}`,
    );
    expect(slots).toEqual({ held: 1, queued: 0 });
    // A pass finds nothing to send.
    await db.execute(sql`update upstream_budget set paused_until = null`);
    await commands.dispatch();
    await commands.drainDispatches();
    expect(creates).toEqual(['upstream-1']);
  });
});
