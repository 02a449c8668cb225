import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { NEW_TASK, queuePlaces } from '../../src/tasks/queue-order.ts';
import { createTestDatabase } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * Queue positions for random queues: tenants of random weights with waiting tasks of random
 * priorities and ages, some tasks already running. queuePlaces loads only the heads of the
 * tenants' queues and deepens its load as needed; its answer must equal a replay of the whole
 * queue written here from the rule alone: a free slot goes to the tenant with the smallest share
 * of slots held per weight (ties: the tenant served least recently, then the oldest next task), a
 * tenant's tasks leave by priority then
 * age, and with no slot free the longest-running task finishes first.
 */

const TENANTS = 4;
const PRIORITIES = ['HIGH', 'NORMAL', 'LOW'] as const;
const BASE = Date.UTC(2026, 10, 1);

type Waiting = { tenant: number; priority: (typeof PRIORITIES)[number]; age: number };
const queueArb = fc.record({
  // Tenant 0 is busy and may weigh much more: a light tenant's task then waits behind more of its
  // tasks than the first load holds.
  weights: fc.tuple(fc.integer({ min: 1, max: 12 }), ...Array.from({ length: TENANTS - 1 }, () => fc.integer({ min: 1, max: 4 }))),
  waiting: fc.array(
    fc.record({
      tenant: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: TENANTS - 1 })),
      priority: fc.constantFrom(...PRIORITIES),
      age: fc.integer({ min: 0, max: 1_000_000 }),
    }),
    { maxLength: 160, size: 'max' },
  ),
  running: fc.array(fc.integer({ min: 0, max: TENANTS - 1 }), { maxLength: 5 }),
  // When each tenant was last served (ms before BASE), or never.
  served: fc.array(fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }), { minLength: TENANTS, maxLength: TENANTS }),
  limit: fc.integer({ min: 1, max: 5 }),
  asker: fc.integer({ min: 0, max: TENANTS - 1 }),
  newPriority: fc.constantFrom(...PRIORITIES),
});
type Queue = typeof queueArb extends fc.Arbitrary<infer T> ? T : never;

let database: TestDatabase;
let tenantIds: string[];

beforeAll(async () => {
  database = await createTestDatabase();
  const rows = await queryRows<{ id: string }>(
    database.db,
    sql`insert into tenants (name) select 'Queue ' || g from generate_series(1, ${TENANTS}) g returning id`,
  );
  tenantIds = rows.map((row) => row.id);
});
afterAll(async () => {
  await database?.drop();
});

type Stored = Waiting & { id: string; queuedAt: number };

async function store(queue: Queue): Promise<Stored[]> {
  const db = database.db;
  await db.execute(sql`truncate omni_tasks cascade`);
  for (const [i, weight] of queue.weights.entries()) {
    const served = queue.served[i];
    const at = served === null || served === undefined ? null : new Date(BASE - served * 1_000).toISOString();
    await db.execute(sql`update tenants set weight = ${weight} where id = ${tenantIds[i]}`);
    await db.execute(sql`delete from upstream_turns where tenant_id = ${tenantIds[i]}`);
    if (at !== null)
      await db.execute(sql`insert into upstream_turns (tenant_id, last_served_at) values (${tenantIds[i]}, ${at}::timestamptz)`);
  }
  const insert = (tenant: number, status: string, at: { queuedAt: number | null; submittedAt: number | null }, priority = 'NORMAL') =>
    queryRows<{ id: string }>(
      db,
      sql`insert into omni_tasks (id, tenant_id, status, prompt, model_name, mode, aspect_ratio, duration_seconds, has_video_input,
                                  request, request_hash, deadline_at, priority, queued_at, submitted_at)
          values (gen_random_uuid(), ${tenantIds[tenant]}, ${status}, 'queued', 'kling-video-o1', 'STD', 'RATIO_16_9', 5, false,
                  '{}', md5(random()::text), now() + interval '1 hour', ${priority},
                  ${at.queuedAt === null ? null : new Date(at.queuedAt).toISOString()}::timestamptz,
                  ${at.submittedAt === null ? null : new Date(at.submittedAt).toISOString()}::timestamptz)
          returning id`,
    ).then((rows) => rows[0]!.id);
  for (const [i, tenant] of queue.running.entries()) await insert(tenant, 'SUBMITTED', { queuedAt: null, submittedAt: BASE - 10_000 + i });
  const stored: Stored[] = [];
  // Distinct ages: ties in age are broken by id, which the rule leaves to the tasks' ids.
  const seen = new Set<number>();
  for (const task of queue.waiting) {
    let queuedAt = BASE + task.age;
    while (seen.has(queuedAt)) queuedAt += 1;
    seen.add(queuedAt);
    stored.push({ ...task, id: await insert(task.tenant, 'PENDING', { queuedAt, submittedAt: null }, task.priority), queuedAt });
  }
  return stored;
}

/** The whole queue replayed from the rule: each waiting task's place (0 = next). */
function oracle(queue: Queue, tasks: Stored[]): Map<string, number> {
  const rank = (task: Stored) => PRIORITIES.indexOf(task.priority);
  const lines = queue.weights.map((_, tenant) =>
    tasks.filter((task) => task.tenant === tenant).sort((x, y) => rank(x) - rank(y) || x.queuedAt - y.queuedAt),
  );
  const held = queue.weights.map((_, tenant) => queue.running.filter((t) => t === tenant).length);
  const served = queue.served.map((s) => (s === null ? Number.NEGATIVE_INFINITY : BASE - s * 1_000));
  let clock = BASE;
  const running = [...queue.running];
  const places = new Map<string, number>();
  while (places.size < tasks.length) {
    if (running.length >= queue.limit) {
      const done = running.shift() as number;
      held[done] = (held[done] as number) - 1;
      continue;
    }
    let best = -1;
    for (let tenant = 0; tenant < lines.length; tenant += 1) {
      const head = lines[tenant]?.[0];
      if (head === undefined) continue;
      if (best === -1) {
        best = tenant;
        continue;
      }
      const share = (held[tenant] as number) / (queue.weights[tenant] as number);
      const bestShare = (held[best] as number) / (queue.weights[best] as number);
      const lessServed = (served[tenant] as number) < (served[best] as number);
      const sameServed = served[tenant] === served[best];
      if (
        share < bestShare ||
        (share === bestShare && (lessServed || (sameServed && head.queuedAt < (lines[best]?.[0]?.queuedAt as number))))
      )
        best = tenant;
    }
    const next = lines[best]?.shift() as Stored;
    places.set(next.id, places.size);
    held[best] = (held[best] as number) + 1;
    clock += 1;
    served[best] = clock;
    running.push(best);
  }
  return places;
}

describe('queue positions (queuePlaces)', () => {
  it('equal a replay of the whole queue, for the asking tenant’s tasks and for a would-be new task', async () => {
    await fc.assert(
      fc.asyncProperty(queueArb, async (queue) => {
        const tasks = await store(queue);
        const expected = oracle(queue, tasks);
        const own = tasks.filter((task) => task.tenant === queue.asker);
        // No budget row: the limit in force is the configured maximum.
        const { places, limit } = await queuePlaces(database.db, queue.limit, {
          tenantId: tenantIds[queue.asker]!,
          ids: own.map((task) => task.id),
        });
        expect(limit).toBe(queue.limit);
        expect(Object.fromEntries(places)).toEqual(Object.fromEntries(own.map((task) => [task.id, expected.get(task.id)])));

        // A new task of the asker's: the same replay with it queued now, behind the asker's tasks of its priority or higher.
        const now: Stored = { tenant: queue.asker, priority: queue.newPriority, age: 0, id: NEW_TASK, queuedAt: BASE + 2_000_000 };
        const withNew = oracle(queue, [...tasks, now]);
        const estimate = await queuePlaces(database.db, queue.limit, {
          tenantId: tenantIds[queue.asker]!,
          ids: [],
          priority: queue.newPriority,
        });
        expect(estimate.places.get(NEW_TASK)).toBe(withNew.get(NEW_TASK));
      }),
      { numRuns: 60 },
    );
  }, 120_000);
});
