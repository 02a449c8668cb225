import { sql } from 'drizzle-orm';
import type { Executor } from '../db/database.ts';
import { queryRows } from '../db/database.ts';
import { omniTasks } from '../db/schema.ts';
import type { TaskPriority } from '../db/schema.ts';
import { candidates, currentLimit, DISPATCHABLE, fairQueues, HOLDS_SLOT, PRIORITY_RANK, RANK } from './budget.ts';
import type { Candidate } from './budget.ts';

/*
 * Queue positions: where waiting tasks stand in the order dispatch will send them. The order is
 * replayed with the dispatcher's own choice (fairQueues): while a slot is free the fair choice
 * takes the next task; when none is, the task that has held its slot longest is taken to finish
 * first. It is exact while nothing new arrives and running tasks finish oldest first; otherwise
 * an estimate, as any queue position is.
 *
 * Only the head of each tenant's queue can matter to a given position, so each replay loads the
 * first `depth` waiting tasks of every tenant, starting at the deepest asked-for task's rank in
 * its own queue, and doubles the depth while some tenant's loaded tasks run out before the asked-
 * for tasks are placed.
 */

/** The task a new create would queue as (estimateOmniVideo): it goes behind its tenant's tasks of its priority or higher. */
export const NEW_TASK = 'new';
const MIN_DEPTH = 16;

/** One tenant's waiting tasks whose places are asked for, and the priority of a would-be new task, if any. */
type Asked = { tenantId: string; ids: readonly string[]; priority?: TaskPriority };

/** Each asked-for waiting task's rank in its own tenant's queue (0 = the tenant's next); absent if it does not wait. */
async function ownRanks(db: Executor, tenantId: string, ids: readonly string[]): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map();
  const rows = await queryRows<{ id: string; rank: number }>(
    db,
    sql`select id, rank from (
          select ${omniTasks.id} as id,
                 (row_number() over (order by ${PRIORITY_RANK}, ${omniTasks.queuedAt}, ${omniTasks.id}))::int - 1 as rank
          from ${omniTasks} where ${omniTasks.tenantId} = ${tenantId} and ${DISPATCHABLE}
        ) q where q.id in (${sql.join(
          ids.map((id) => sql`${id}::uuid`),
          sql`, `,
        )})`,
  );
  return new Map(rows.map((row) => [row.id, Number(row.rank)]));
}

type NewTask = { rank: number; weight: number; lastServed: number };

/** How many of the tenant's waiting tasks a new task of this priority would queue behind, and the tenant's weight. */
async function newTaskRank(db: Executor, tenantId: string, priority: TaskPriority): Promise<NewTask> {
  const [row] = await queryRows<{ n: number; weight: number | null; last_served: string | null }>(
    db,
    sql`select (select count(*)::int from ${omniTasks}
                where ${omniTasks.tenantId} = ${tenantId} and ${DISPATCHABLE} and ${PRIORITY_RANK} <= ${RANK[priority]}) as n,
               (select weight from tenants where id = ${tenantId}) as weight,
               (select last_served_at from upstream_turns where tenant_id = ${tenantId}) as last_served`,
  );
  const lastServed = row?.last_served ?? null;
  return {
    rank: Number(row?.n ?? 0),
    weight: Number(row?.weight ?? 1),
    lastServed: lastServed === null ? Number.NEGATIVE_INFINITY : new Date(lastServed).getTime(),
  };
}

type Slots = { limit: number; running: readonly string[] };

/** The tenants holding slots, oldest holder first (the first expected to free its slot). */
async function runningTenants(db: Executor): Promise<string[]> {
  const rows = await queryRows<{ tenant_id: string }>(
    db,
    sql`select ${omniTasks.tenantId} as tenant_id from ${omniTasks} where ${HOLDS_SLOT}
        order by coalesce(${omniTasks.submittedAt}, ${omniTasks.updatedAt}), ${omniTasks.id}`,
  );
  return rows.map((row) => row.tenant_id);
}

/**
 * Replays dispatch over `waiting` until every id in `wanted` is placed, and returns each one's
 * place (0 = the next to go); null if a tenant in `cut` (loaded `depth` tasks, and may have more)
 * ran out of loaded tasks first, so a deeper load is needed. A wanted task that no longer waits
 * is left out.
 */
function replay(
  waiting: readonly Candidate[],
  slots: Slots,
  wanted: ReadonlySet<string>,
  cut: { depth: number; tenants: ReadonlySet<string> },
): Map<string, number> | null {
  const held = new Map<string, number>();
  for (const tenantId of slots.running) held.set(tenantId, (held.get(tenantId) ?? 0) + 1);
  const running = [...slots.running];
  const taken = new Map<string, number>();
  const queues = fairQueues(waiting);
  const places = new Map<string, number>();
  let finished = 0;
  let place = 0;
  while (places.size < wanted.size) {
    if (running.length - finished >= slots.limit) {
      // No slot free: the task that has held its slot longest is taken to finish first.
      const tenantId = running[finished] as string;
      finished += 1;
      held.set(tenantId, (held.get(tenantId) ?? 1) - 1);
      continue;
    }
    const next = queues.pick(held);
    if (next === null) break;
    if (wanted.has(next.id)) places.set(next.id, place);
    place += 1;
    held.set(next.tenantId, (held.get(next.tenantId) ?? 0) + 1);
    running.push(next.tenantId);
    if (next.id === NEW_TASK) continue;
    const count = (taken.get(next.tenantId) ?? 0) + 1;
    taken.set(next.tenantId, count);
    if (count === cut.depth && cut.tenants.has(next.tenantId) && places.size < wanted.size) return null;
  }
  return places;
}

/** Puts the would-be new task into its tenant's loaded queue, behind `rank` of the tenant's tasks. */
function withNewTask(waiting: readonly Candidate[], tenantId: string, at: NewTask): Candidate[] {
  const task: Candidate = { id: NEW_TASK, tenantId, weight: at.weight, queuedAt: new Date(), lastServed: at.lastServed };
  const result: Candidate[] = [];
  let own = 0;
  let placed = false;
  for (const candidate of waiting) {
    if (candidate.tenantId === tenantId) {
      if (own === at.rank) {
        result.push(task);
        placed = true;
      }
      own += 1;
    }
    result.push(candidate);
  }
  if (!placed) result.push(task);
  return result;
}

/** The tenants that have exactly `depth` tasks in the load: they may have more waiting. */
function cutAt(waiting: readonly Candidate[], depth: number): Set<string> {
  const counts = new Map<string, number>();
  for (const task of waiting) counts.set(task.tenantId, (counts.get(task.tenantId) ?? 0) + 1);
  return new Set([...counts].filter(([, count]) => count >= depth).map(([tenantId]) => tenantId));
}

/** Places in the dispatch order (0 = next), and the budget they were replayed under. */
export type QueuePlaces = { places: Map<string, number>; limit: number; inFlight: number };

/**
 * The places in the dispatch order (0 = next) of one tenant's waiting tasks, and of a new task of
 * `priority` if one is given (under NEW_TASK), with the limit in force and the slots held. A task
 * that does not wait (dispatched, final, past its deadline or cancel time) has no place.
 */
export async function queuePlaces(db: Executor, maxInFlight: number, asked: Asked): Promise<QueuePlaces> {
  const [ranks, newTask, running, limit] = await Promise.all([
    ownRanks(db, asked.tenantId, asked.ids),
    asked.priority === undefined ? Promise.resolve(null) : newTaskRank(db, asked.tenantId, asked.priority),
    runningTenants(db),
    currentLimit(db, maxInFlight),
  ]);
  const result = (places: Map<string, number>): QueuePlaces => ({ places, limit, inFlight: running.length });
  const wanted = new Set(ranks.keys());
  if (newTask !== null) wanted.add(NEW_TASK);
  if (wanted.size === 0) return result(new Map());
  const deepest = Math.max(newTask?.rank ?? 0, ...ranks.values()) + 1;
  for (let depth = Math.max(MIN_DEPTH, deepest); ; depth *= 2) {
    const loaded = await candidates(db, depth);
    const waiting = newTask === null ? loaded : withNewTask(loaded, asked.tenantId, newTask);
    const places = replay(waiting, { limit, running }, wanted, { depth, tenants: cutAt(loaded, depth) });
    if (places !== null) return result(places);
  }
}
