import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { omniTasks } from '../../src/db/schema.ts';
import type { KlingTask } from '../../src/kling/payload.ts';
import { createTaskStateMachine, transitionFromUpstream } from '../../src/tasks/state.ts';
import type { TaskRow, Transition } from '../../src/tasks/state.ts';
import { createTask, createTenant, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

/*
 * The state machine on a real database, driven directly: what each transition leaves in the task
 * row, its events, the change log and the task's pending submission, and which final-state hooks
 * run. The tasks come from a gateway whose upstream never moves on its own.
 */

let gateway: TestGateway;
let tenant: TestTenant;
const hookCalls: { hook: 'succeeded' | 'failed'; taskId: string; status: string }[] = [];
const machine = createTaskStateMachine({
  finalStateHooks: {
    onSucceeded: [async (_tx, task) => void hookCalls.push({ hook: 'succeeded', taskId: task.id, status: task.status })],
    onFailed: [async (_tx, task) => void hookCalls.push({ hook: 'failed', taskId: task.id, status: task.status })],
  },
});

beforeAll(async () => {
  gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 }, env: { RECONCILER_INTERVAL_MS: '600000' } });
  gateway.simulator.settings.callbacks = false;
  tenant = await createTenant(gateway, 'Stateful');
});
afterAll(async () => {
  await gateway?.stop();
});

async function newTask(): Promise<string> {
  return taskUuid((await createTask(gateway, tenant, TEXT_TO_VIDEO)).id);
}

function apply(taskId: string, transition: Transition) {
  return gateway.database.db.transaction((tx) => machine.transition(tx, taskId, transition));
}

async function stored(taskId: string): Promise<TaskRow> {
  const [row] = await gateway.database.db.select().from(omniTasks).where(eq(omniTasks.id, taskId));
  if (row === undefined) throw new Error(`no task ${taskId}`);
  return row;
}

async function logged(taskId: string): Promise<{ version: number; status: string }[]> {
  return queryRows(
    gateway.database.db,
    sql`select version, task->>'status' as status from task_changes where task_id = ${taskId} order by txid, seq`,
  );
}

async function statusEvents(taskId: string): Promise<{ version: number; from: string | null; to: string; source: string }[]> {
  return queryRows(
    gateway.database.db,
    sql`select version, from_status as from, to_status as to, source from task_events
        where task_id = ${taskId} and kind = 'status' order by version`,
  );
}

describe('the task state machine', () => {
  it('moves forward: a new version, its event and its change, timestamps and schedule as the new status says', async () => {
    const id = await newTask();
    const before = await stored(id);
    expect(before).toMatchObject({ status: 'SUBMITTED', version: 2, checkAttempts: 0 });
    await gateway.database.db.update(omniTasks).set({ checkAttempts: 3, statusMessage: 'queued upstream' }).where(eq(omniTasks.id, id));

    const processing = await apply(id, { status: 'PROCESSING', source: 'poll' });
    expect(processing).toMatchObject({ changed: true, task: { status: 'PROCESSING', version: 3 } });
    const row = await stored(id);
    // A transition without a message keeps the one there was; attempts start again; the next look is 5 s ahead.
    expect(row).toMatchObject({ status: 'PROCESSING', version: 3, statusMessage: 'queued upstream', checkAttempts: 0, completedAt: null });
    expect(row.submittedAt).toEqual(before.submittedAt);
    const ahead = (row.nextCheckAt?.getTime() ?? 0) - (row.updatedAt?.getTime() ?? 0);
    expect(ahead).toBe(5_000);
    expect(row.updatedAt.getTime()).toBeGreaterThan(before.updatedAt.getTime());

    const done = await apply(id, { status: 'SUCCEEDED', statusMessage: null, source: 'webhook' });
    expect(done).toMatchObject({ changed: true, task: { status: 'SUCCEEDED', version: 4 } });
    const final = await stored(id);
    expect(final).toMatchObject({ statusMessage: null, nextCheckAt: null });
    expect(final.completedAt).not.toBeNull();
    expect(await statusEvents(id)).toEqual([
      { version: 1, from: null, to: 'PENDING', source: 'create' },
      { version: 2, from: 'PENDING', to: 'SUBMITTED', source: 'create' },
      { version: 3, from: 'SUBMITTED', to: 'PROCESSING', source: 'poll' },
      { version: 4, from: 'PROCESSING', to: 'SUCCEEDED', source: 'webhook' },
    ]);
    expect(await logged(id)).toEqual([
      { version: 1, status: 'PENDING' },
      { version: 2, status: 'SUBMITTED' },
      { version: 3, status: 'PROCESSING' },
      { version: 4, status: 'SUCCEEDED' },
    ]);
  });

  it('advanceAndRead answers with the task exactly as a read of it afterwards (the create answers from it)', async () => {
    const id = await newTask();
    const before = await stored(id);
    const claims = { upstreamTaskId: before.upstreamTaskId ?? '', externalTaskId: id };
    const moved = await machine.advanceAndRead(gateway.database.db, id, { status: 'PROCESSING', source: 'webhook' }, claims);
    expect(moved.outcome).toBe('changed');
    // Every column, its type included (dates as Date, positions as bigint), as the table gives it.
    expect(moved.task).toStrictEqual(await stored(id));
    expect(moved.task).toMatchObject({ status: 'PROCESSING', version: 3 });
    // A move that changes nothing reads nothing back.
    const again = await machine.advanceAndRead(gateway.database.db, id, { status: 'PROCESSING', source: 'webhook' }, claims);
    expect(again).toEqual({ outcome: 'unchanged', task: null });
  });

  it('a duplicate, stale or refused move changes nothing: same version, no event, no change logged', async () => {
    const id = await newTask();
    await apply(id, { status: 'PROCESSING', source: 'poll' });
    for (const transition of [
      { status: 'PROCESSING', source: 'poll' },
      { status: 'SUBMITTED', source: 'webhook' },
      { status: 'PENDING', source: 'webhook' },
      // A create's refusal only applies while the task is still PENDING.
      { status: 'FAILED', source: 'create', onlyFrom: ['PENDING'] },
    ] as Transition[]) {
      const result = await apply(id, transition);
      expect(result).toMatchObject({ changed: false, task: { status: 'PROCESSING', version: 3 } });
    }
    expect((await stored(id)).version).toBe(3);
    expect(await logged(id)).toHaveLength(3);
    expect(await statusEvents(id)).toHaveLength(3);
    expect(await apply('00000000-0000-4000-8000-000000000000', { status: 'FAILED', source: 'test' })).toBeNull();
  });

  it('a stale move that brings an upstream id the task lacks keeps the id, without a new version', async () => {
    const id = await newTask();
    await gateway.database.db.update(omniTasks).set({ upstreamTaskId: null }).where(eq(omniTasks.id, id));
    const result = await apply(id, { status: 'SUBMITTED', upstreamTaskId: 'learnt-late', source: 'lookup' });
    expect(result).toMatchObject({ changed: false, task: { upstreamTaskId: 'learnt-late', version: 2 } });
    expect(await stored(id)).toMatchObject({ upstreamTaskId: 'learnt-late', version: 2 });
    // An id it already has is not replaced.
    const again = await apply(id, { status: 'SUBMITTED', upstreamTaskId: 'another', source: 'lookup' });
    expect(again).toMatchObject({ changed: false, task: { upstreamTaskId: 'learnt-late' } });
    const moved = await apply(id, { status: 'PROCESSING', upstreamTaskId: 'another', source: 'poll' });
    expect(moved).toMatchObject({ changed: true, task: { upstreamTaskId: 'learnt-late' } });
    expect(await logged(id)).toHaveLength(3);
  });

  it('a final state runs the hooks of that state once, and keeps the videos it was given', async () => {
    const succeeded = await newTask();
    const failed = await newTask();
    hookCalls.length = 0;
    const videos = [{ id: 'v1', upstreamUrl: 'https://cdn.example/v1.mp4', durationSeconds: 5 }];
    await apply(succeeded, { status: 'SUCCEEDED', videos, source: 'webhook' });
    await apply(succeeded, { status: 'SUCCEEDED', videos, source: 'webhook' });
    await apply(failed, { status: 'FAILED', statusMessage: 'refused', source: 'webhook' });
    await apply(failed, { status: 'SUCCEEDED', source: 'webhook' });
    expect(hookCalls).toEqual([
      { hook: 'succeeded', taskId: succeeded, status: 'SUCCEEDED' },
      { hook: 'failed', taskId: failed, status: 'FAILED' },
    ]);
    expect((await stored(succeeded)).videos).toEqual(videos);
    expect(await stored(failed)).toMatchObject({ status: 'FAILED', statusMessage: 'refused', videos: [] });
  });

  it('a PENDING task keeps its submission until it moves on', async () => {
    gateway.simulator.faults.push({ op: 'create', kind: 'http500', count: 50 });
    const id = await newTask();
    gateway.simulator.faults.length = 0;
    const submissions = async () =>
      Number(
        (await queryRows<{ n: number }>(gateway.database.db, sql`select count(*)::int as n from task_submissions where task_id = ${id}`))[0]
          ?.n,
      );
    expect((await stored(id)).status).toBe('PENDING');
    expect((await stored(id)).submittedAt).toBeNull();
    expect(await submissions()).toBe(1);
    await apply(id, { status: 'SUBMITTED', upstreamTaskId: 'up-1', source: 'lookup' });
    expect(await submissions()).toBe(0);
    expect((await stored(id)).submittedAt).not.toBeNull();
  });

  it('an upstream answer becomes its transition: a failure without a message gets one, a success its videos', () => {
    const base: KlingTask = {
      taskId: 'up-9',
      externalTaskId: null,
      status: 'submitted',
      statusMessage: '',
      videos: [],
      finalUnitDeduction: '4',
      createdAt: null,
      updatedAt: null,
      raw: { any: 1 },
    };
    expect(transitionFromUpstream({ ...base, status: 'failed' }, 'poll')).toMatchObject({
      status: 'FAILED',
      statusMessage: 'The upstream reported the task as failed.',
      upstreamTaskId: 'up-9',
      source: 'poll',
      upstreamUnits: '4',
      payload: { any: 1 },
    });
    expect(transitionFromUpstream({ ...base, status: 'failed', statusMessage: 'Bad image' }, 'poll').statusMessage).toBe('Bad image');
    expect(transitionFromUpstream({ ...base, status: 'processing', statusMessage: 'busy' }, 'poll')).toMatchObject({
      status: 'PROCESSING',
      statusMessage: null,
      videos: undefined,
    });
    expect(transitionFromUpstream({ ...base, status: 'submitted' }, 'poll').status).toBe('SUBMITTED');
    const video = { id: 'v', url: 'https://cdn.example/v.mp4', durationSeconds: 5 };
    expect(transitionFromUpstream({ ...base, status: 'succeed', videos: [video] }, 'webhook')).toMatchObject({
      status: 'SUCCEEDED',
      videos: [{ id: 'v', upstreamUrl: 'https://cdn.example/v.mp4', durationSeconds: 5 }],
    });
  });
});
