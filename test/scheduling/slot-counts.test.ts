import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { budgetState } from '../../src/tasks/budget.ts';
import { createTestDatabase } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * The slots held and the tasks waiting are counted by triggers on omni_tasks (upstream_slot_counts),
 * which dispatch, creates and /metrics read instead of counting tasks. For random histories of
 * task changes (bulk and single inserts, claims, requeues, status changes, deletions, TRUNCATE),
 * the maintained counts must equal a count of the tasks themselves, per tenant and in total.
 */

const TENANTS = 3;
const STATUSES = ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const;

type Step =
  | { kind: 'insert'; tenant: number; status: (typeof STATUSES)[number]; queued: boolean; count: number }
  | { kind: 'claim' | 'requeue' | 'delete'; pick: number }
  | { kind: 'status'; pick: number; status: (typeof STATUSES)[number]; clearQueue: boolean }
  | { kind: 'truncate' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      tenant: fc.nat({ max: TENANTS - 1 }),
      status: fc.constantFrom(...STATUSES),
      queued: fc.boolean(),
      count: fc.integer({ min: 1, max: 6 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constantFrom('claim' as const, 'requeue' as const, 'delete' as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('status' as const),
      pick: fc.nat(),
      status: fc.constantFrom(...STATUSES),
      clearQueue: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'truncate' as const }) },
);

let database: TestDatabase;
let tenantIds: string[];

beforeAll(async () => {
  database = await createTestDatabase();
  const rows = await queryRows<{ id: string }>(
    database.db,
    sql`insert into tenants (name) select 'Slots ' || g from generate_series(1, ${TENANTS}) g returning id`,
  );
  tenantIds = rows.map((row) => row.id);
});
afterAll(async () => {
  await database?.drop();
});

/** The id of the task at `pick` (modulo the table's size, in id order), or null if none is left. */
async function taskAt(pick: number): Promise<string | null> {
  const rows = await queryRows<{ id: string }>(database.db, sql`select id from omni_tasks order by id`);
  return rows.length === 0 ? null : rows[pick % rows.length]!.id;
}

async function apply(step: Step): Promise<void> {
  const db = database.db;
  if (step.kind === 'truncate') {
    await db.execute(sql`truncate omni_tasks cascade`);
    return;
  }
  if (step.kind === 'insert') {
    // One statement, however many rows: the insert trigger counts per statement.
    await db.execute(
      sql`insert into omni_tasks (id, tenant_id, status, prompt, model_name, mode, aspect_ratio, duration_seconds, has_video_input,
                                  request, request_hash, deadline_at, queued_at)
          select gen_random_uuid(), ${tenantIds[step.tenant]}, ${step.status}, 'counted', 'kling-video-o1', 'STD', 'RATIO_16_9', 5, false,
                 '{}', md5(random()::text), now() + interval '1 hour', ${step.queued ? sql`now()` : sql`null`}
          from generate_series(1, ${step.count})`,
    );
    return;
  }
  const id = await taskAt(step.pick);
  if (id === null) return;
  if (step.kind === 'delete') await db.execute(sql`delete from omni_tasks where id = ${id}`);
  if (step.kind === 'claim') await db.execute(sql`update omni_tasks set queued_at = null where id = ${id}`);
  if (step.kind === 'requeue') await db.execute(sql`update omni_tasks set queued_at = created_at where id = ${id}`);
  if (step.kind === 'status') {
    await db.execute(
      sql`update omni_tasks set status = ${step.status}${step.clearQueue ? sql`, queued_at = null` : sql``} where id = ${id}`,
    );
  }
}

type Counts = Record<string, { held: number; queued: number }>;

async function maintained(): Promise<Counts> {
  const rows = await queryRows<{ tenant_id: string; held: number; queued: number }>(
    database.db,
    sql`select tenant_id, sum(held)::int as held, sum(queued)::int as queued from upstream_slot_counts group by 1`,
  );
  return Object.fromEntries(
    rows
      .filter((row) => Number(row.held) !== 0 || Number(row.queued) !== 0)
      .map((row) => [row.tenant_id, { held: Number(row.held), queued: Number(row.queued) }]),
  );
}

async function counted(): Promise<Counts> {
  const rows = await queryRows<{ tenant_id: string; held: number; queued: number }>(
    database.db,
    sql`select tenant_id,
               count(*) filter (where status in ('PENDING', 'SUBMITTED', 'PROCESSING') and queued_at is null)::int as held,
               count(*) filter (where queued_at is not null)::int as queued
        from omni_tasks group by 1`,
  );
  return Object.fromEntries(
    rows
      .filter((row) => Number(row.held) !== 0 || Number(row.queued) !== 0)
      .map((row) => [row.tenant_id, { held: Number(row.held), queued: Number(row.queued) }]),
  );
}

describe('maintained upstream slot counts', () => {
  it('equal a count of the tasks after any history of changes, per tenant and in budgetState', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 40 }), async (steps) => {
        await database.db.execute(sql`truncate omni_tasks cascade`);
        for (const step of steps) await apply(step);
        const truth = await counted();
        expect(await maintained()).toEqual(truth);
        const state = await budgetState(database.db, 10);
        const totals = Object.values(truth).reduce((sum, c) => ({ held: sum.held + c.held, queued: sum.queued + c.queued }), {
          held: 0,
          queued: 0,
        });
        expect({ inFlight: state.inFlight, queued: state.queued }).toEqual({ inFlight: totals.held, queued: totals.queued });
      }),
      { numRuns: 60 },
    );
  });

  it('hold after TRUNCATE: an emptied table has no slots held and no task waiting', async () => {
    await database.db.execute(sql`delete from omni_tasks`);
    await apply({ kind: 'insert', tenant: 0, status: 'SUBMITTED', queued: false, count: 3 });
    await apply({ kind: 'insert', tenant: 1, status: 'PENDING', queued: true, count: 2 });
    expect(await budgetState(database.db, 10)).toMatchObject({ inFlight: 3, queued: 2 });
    await apply({ kind: 'truncate' });
    expect(await budgetState(database.db, 10)).toMatchObject({ inFlight: 0, queued: 0 });
  });
});
