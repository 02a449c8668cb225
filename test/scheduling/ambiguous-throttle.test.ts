import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createTenant, taskUuid } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { graphqlAt } from '../reliability/support.ts';
import { createTask, input } from './support.ts';

const CANCEL = `mutation ($id: ID!) { cancelOmniTask(id: $id) { __typename } }`;

/*
 * A create whose first attempt was accepted upstream but its answer lost, whose lookup before the
 * retry failed, and whose retry was throttled (1303): the task may be running upstream, so it must
 * keep its slot and never be treated as not sent (requeued, cancellable at no charge).
 */
describe('a throttled retry after an attempt that may have been accepted', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    gateway = await startGateway({
      delays: { processingMs: 600_000, finishMs: 1_200_000 },
      client: { maxAttempts: 2 },
      env: { UPSTREAM_MAX_IN_FLIGHT: '1' },
    });
    gateway.simulator.settings.callbacks = false;
    tenant = await createTenant(gateway, 'Ambiguous');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('keeps the task out of the queue, and a cancel is CancelNotPossibleError', async () => {
    gateway.simulator.faults.push(
      { op: 'create', kind: 'drop_after_accept' },
      { op: 'get', kind: 'http500' },
      { op: 'create', kind: 'http429_1303' },
    );
    const task = await createTask(gateway.url, tenant.apiKey, input('accepted, answer lost, retry throttled'));
    const id = taskUuid(task.id);
    expect(gateway.simulator.faults).toEqual([]);
    expect(gateway.simulator.stats.byExternalTaskId[id]?.accepted).toBe(1);
    const [row] = await queryRows<{ status: string; queued_at: string | null }>(
      gateway.database.db,
      sql`select status, queued_at from omni_tasks where id = ${id}`,
    );
    expect(row).toEqual({ status: 'PENDING', queued_at: null });
    const cancel = await graphqlAt(gateway.url, tenant.apiKey, CANCEL, { id: task.id });
    expect(cancel.text).toContain('CancelNotPossibleError');
  });
});
