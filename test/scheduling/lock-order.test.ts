import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { claimDispatch } from '../../src/tasks/budget.ts';
import { createTenant, taskUuid } from '../support/fixtures.ts';
import { serverUrl } from '../support/database.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { waitFor } from '../reliability/support.ts';
import { createTask, input } from './support.ts';

/*
 * A create locks its tenant's row, then asks for the budget lock to claim its own task; a dispatch
 * pass holds the budget lock and records which tenants it served. If that record were on the
 * tenant row, a pass serving the tenant of a create waiting for the budget would wait for the
 * create, and the create for the pass: a deadlock, which PostgreSQL breaks by failing one of them.
 * The test lines the three transactions up in that order, through the real create and pass.
 */

/** Sessions of this database waiting for a row lock on the budget row or on a tenant row. */
async function waiting(gateway: TestGateway): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    gateway.database.db,
    sql`select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
  );
  return Number(row?.n ?? 0);
}

describe.skipIf(serverUrl === null)('lock order of creates and dispatch passes (PostgreSQL)', () => {
  let gateway: TestGateway | undefined;
  afterEach(async () => {
    await gateway?.stop();
    gateway = undefined;
  });

  it('a pass that serves the tenant of a create waiting for the budget lock does not deadlock with it', async () => {
    // An API-only instance runs no passes of its own: the test's pass is the one the create waits behind.
    gateway = await startGateway({ delays: { processingMs: 10, finishMs: 600_000 }, env: { ROLE: 'api' } });
    const tenant = await createTenant(gateway, 'Locked');
    const db = gateway.database.db;
    // A task of the tenant waiting for a slot, for the pass to claim.
    await db.execute(
      sql`insert into omni_tasks (id, tenant_id, status, prompt, model_name, mode, aspect_ratio, duration_seconds, has_video_input,
                                  request, request_hash, deadline_at, queued_at)
          values (gen_random_uuid(), ${taskUuid(tenant.id)}, 'PENDING', 'waiting', 'kling-video-o1', 'STD', 'RATIO_16_9', 5, false,
                  '{}', md5(random()::text), now() + interval '1 hour', now() - interval '1 minute')`,
    );
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    // 1. Another transaction holds the budget lock, so the pass and the create line up behind it.
    let locked!: () => void;
    const budgetLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holder = db.transaction(async (tx) => {
      await tx.execute(sql`select id from upstream_budget where id = 1 for update`);
      locked();
      await released;
    });
    await budgetLocked;
    // 2. The pass waits for the budget lock first.
    const pass = claimDispatch(db, { maxInFlight: 10, leaseSeconds: 60 });
    await waitFor('the pass waiting for the budget lock', async () => (await waiting(gateway!)) >= 1);
    // 3. The create takes the tenant's row lock and waits for the budget lock behind the pass.
    const create = createTask(gateway.url, tenant.apiKey, input('behind the pass'));
    await waitFor('the create waiting for the budget lock', async () => (await waiting(gateway!)) >= 2);
    release();
    await holder;
    // The pass claims the waiting task and records the tenant served; the create then claims its own.
    const claimed = await pass;
    expect(claimed.map((c) => c.task.prompt)).toEqual(['waiting']);
    const created = await create;
    // Sent upstream: SUBMITTED, or PROCESSING when the simulator's callback (10 ms on) came first.
    expect(['SUBMITTED', 'PROCESSING']).toContain(created.status);
  }, 30_000);
});
