import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createMeteringService } from '../../src/metering/metering.ts';
import { createTestDatabase } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * The usage rollups are kept by triggers on the ledger; reports and quotas read them. For random
 * ledger histories (bulk and single inserts, deletions, corrections, across days and months), the
 * rollups must equal the ledger's own sums, and a report over any range must equal the ledger's.
 */

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** An origin at a month's start, so histories cross days and months on both sides. */
const ORIGIN = Date.UTC(2026, 2, 1);
const TENANTS = 3;

type LedgerEvent = { tenant: number; at: number; kind: 'video' | 'failure'; mode: 'STD' | 'PRO'; seconds: number; units: number };

const eventArb: fc.Arbitrary<LedgerEvent> = fc.record({
  tenant: fc.integer({ min: 0, max: TENANTS - 1 }),
  // Within ±12 days of the origin (a month's start), to the millisecond, day edges included.
  at: fc.oneof(
    fc.integer({ min: -12 * DAY_MS, max: 12 * DAY_MS }),
    fc.tuple(fc.integer({ min: -12, max: 12 }), fc.constantFrom(-1, 0, 1)).map(([day, edge]) => day * DAY_MS + edge),
  ),
  kind: fc.constantFrom('video' as const, 'failure' as const),
  mode: fc.constantFrom('STD' as const, 'PRO' as const),
  seconds: fc.integer({ min: 0, max: 2_000 }).map((n) => n / 100),
  units: fc.integer({ min: 0, max: 3_000 }).map((n) => n / 100),
});

const historyArb = fc.record({
  events: fc.array(eventArb, { minLength: 1, maxLength: 80 }),
  /** How many of the events go in as one bulk statement (the rest one by one). */
  bulk: fc.nat(),
  /** Events removed again, and events corrected (their seconds changed), by index. */
  removed: fc.uniqueArray(fc.nat({ max: 79 }), { maxLength: 10 }),
  corrected: fc.uniqueArray(fc.nat({ max: 79 }), { maxLength: 5 }),
  /** Report ranges: a start and a length, some starting or ending on a day's edge. */
  ranges: fc.array(
    fc.tuple(
      fc.oneof(
        fc.integer({ min: -14 * DAY_MS, max: 14 * DAY_MS }),
        fc.integer({ min: -14, max: 14 }).map((day) => day * DAY_MS),
      ),
      fc.oneof(
        fc.integer({ min: 1, max: 30 * DAY_MS }),
        fc.integer({ min: 1, max: 30 }).map((days) => days * DAY_MS),
      ),
    ),
    { minLength: 1, maxLength: 8 },
  ),
});

type History = typeof historyArb extends fc.Arbitrary<infer T> ? T : never;

let database: TestDatabase;
let tenantIds: string[];

beforeAll(async () => {
  database = await createTestDatabase();
  const rows = await queryRows<{ id: string }>(
    database.db,
    sql`insert into tenants (name) select 'Rollup ' || g from generate_series(1, ${TENANTS}) g returning id`,
  );
  tenantIds = rows.map((row) => row.id);
});
afterAll(async () => {
  await database?.drop();
});

/** A task for each event (the ledger's foreign key), then the events: a bulk statement and single inserts. */
async function write(history: History): Promise<string[]> {
  const db = database.db;
  const taskIds: string[] = [];
  for (const event of history.events) {
    const [task] = await queryRows<{ id: string }>(
      db,
      sql`insert into omni_tasks (id, tenant_id, status, prompt, model_name, mode, aspect_ratio, duration_seconds, has_video_input,
                                  request, request_hash, deadline_at)
          values (gen_random_uuid(), ${tenantIds[event.tenant]}, 'SUCCEEDED', 'rollup', 'kling-video-o1', ${event.mode}, 'RATIO_16_9', 5, false,
                  '{}', md5(random()::text), now()) returning id`,
    );
    taskIds.push(task!.id);
  }
  const values = history.events.map(
    (event, i) =>
      sql`(${tenantIds[event.tenant]}, ${taskIds[i]}, ${event.kind}, ${event.mode}, false, ${event.seconds}, 'result', 0.8, ${event.units},
           ${new Date(ORIGIN + event.at).toISOString()}::timestamptz)`,
  );
  const bulk = history.bulk % (values.length + 1);
  const insert = (rows: typeof values) =>
    db.execute(sql`insert into usage_events (tenant_id, task_id, kind, mode, has_video_input, video_seconds, seconds_source, rate, units, occurred_at)
                   values ${sql.join(rows, sql`, `)}`);
  if (bulk > 0) await insert(values.slice(0, bulk));
  for (const row of values.slice(bulk)) await insert([row]);
  const removed = history.removed.map((i) => taskIds[i]).filter((id): id is string => id !== undefined);
  if (removed.length > 0) await db.execute(sql`delete from usage_events where task_id in ${removed}`);
  for (const i of history.corrected) {
    if (taskIds[i] !== undefined)
      await db.execute(sql`update usage_events set video_seconds = video_seconds + 1.25 where task_id = ${taskIds[i]}`);
  }
  return taskIds;
}

type Group = { tenant_id: string; day: string; kind: string; mode: string; events: number; seconds: number; units: number };

const byKey = (rows: Group[]) =>
  new Map(rows.filter((row) => Number(row.events) !== 0).map((row) => [`${row.tenant_id}/${row.day}/${row.kind}/${row.mode}`, row]));

describe('usage rollups', () => {
  it('equal the ledger, and reports over any range equal the ledger, for random histories', async () => {
    const metering = createMeteringService({ db: database.db, prices: { STD: 0.6, PRO: 0.8, STD_VIDEO: 0.9, PRO_VIDEO: 1.2 } });
    await fc.assert(
      fc.asyncProperty(historyArb, async (history) => {
        await database.db.execute(sql`truncate usage_events, usage_rollups, omni_tasks cascade`);
        await write(history);
        const ledger = await queryRows<Group>(
          database.db,
          sql`select tenant_id, to_char((occurred_at at time zone 'UTC')::date, 'YYYY-MM-DD') as day, kind, mode, count(*)::int as events,
                     sum(video_seconds)::float8 as seconds, sum(units)::float8 as units
              from usage_events group by 1, 2, 3, 4`,
        );
        const rollups = await queryRows<Group>(
          database.db,
          sql`select tenant_id, to_char(day, 'YYYY-MM-DD') as day, kind, mode, sum(events)::int as events,
                     sum(video_seconds)::float8 as seconds, sum(units)::float8 as units
              from usage_rollups group by 1, 2, 3, 4`,
        );
        const expected = byKey(ledger);
        const actual = byKey(rollups);
        expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
        for (const [key, row] of expected) {
          const rolled = actual.get(key)!;
          expect(Number(rolled.events)).toBe(Number(row.events));
          expect(Number(rolled.seconds)).toBeCloseTo(Number(row.seconds), 6);
          expect(Number(rolled.units)).toBeCloseTo(Number(row.units), 6);
        }
        // The random ranges, and two hours around each of the first events: mostly inside one day,
        // which a report reads from the ledger alone.
        const around = history.events.slice(0, 3).map((event): [number, number] => [event.at - HOUR_MS, 2 * HOUR_MS]);
        for (const [start, length] of [...history.ranges, ...around]) {
          const range = { from: new Date(ORIGIN + start), to: new Date(ORIGIN + start + length) };
          for (const tenantId of tenantIds) {
            const [direct] = await queryRows<{ succeeded: number; failed: number; seconds: number; units: number }>(
              database.db,
              sql`select count(*) filter (where kind = 'video')::int as succeeded, count(*) filter (where kind = 'failure')::int as failed,
                         coalesce(sum(video_seconds) filter (where kind = 'video'), 0)::float8 as seconds,
                         coalesce(sum(units) filter (where kind = 'video'), 0)::float8 as units
                  from usage_events where tenant_id = ${tenantId}
                    and occurred_at >= ${range.from.toISOString()}::timestamptz and occurred_at < ${range.to.toISOString()}::timestamptz`,
            );
            const report = await metering.summary(tenantId, range);
            expect(report.succeededTasks).toBe(direct!.succeeded);
            expect(report.failedTasks).toBe(direct!.failed);
            expect(report.videoSeconds).toBeCloseTo(direct!.seconds, 5);
            expect(report.units).toBeCloseTo(direct!.units, 5);
          }
        }
      }),
      { numRuns: 25 },
    );
  }, 120_000);
});
