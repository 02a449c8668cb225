import { and, eq, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import type { Db, Executor, Tx } from '../db/database.ts';
import { pipeline, queryRows, rowsOf } from '../db/database.ts';
import type { Startable } from '../db/database.ts';
import { omniTasks, taskEvents, upstreamBudget, upstreamSlotCounts } from '../db/schema.ts';
import type { TaskPriority } from '../db/schema.ts';
import { storable } from '../db/storable.ts';
import type { TaskRow } from './state.ts';

/*
 * The upstream budget and the queue in front of it, all in the database so that every instance
 * sees the same: a task holds an upstream slot from the moment it is claimed for dispatch
 * (queued_at cleared) until it is final. A dispatch pass locks the one budget row, reads the
 * slots held (upstream_slot_counts, kept by triggers in the writing transactions), picks waiting
 * tasks fairly and claims them (FOR UPDATE SKIP LOCKED), all in one short transaction; passes of
 * all instances run one after another, so the budget cannot be overshot and a task is claimed once.
 */

const BUDGET_ROW = 1;
/** One overload is one signal: the limit halves at most once per this many milliseconds. */
const DECREASE_COOLDOWN_MS = 1_000;
/** After a refusal for load nothing is sent for this long (or the upstream's Retry-After, up to a minute). */
const THROTTLE_PAUSE_MS = 200;
const MAX_PAUSE_MS = 60_000;

/** Dispatch order within a tenant: priority, then age. */
export const PRIORITY_RANK = sql`(case ${omniTasks.priority} when 'HIGH' then 0 when 'NORMAL' then 1 else 2 end)`;
export const RANK: Record<TaskPriority, number> = { HIGH: 0, NORMAL: 1, LOW: 2 };

/** A task holding an upstream slot: claimed (or sent) and not final. */
export const HOLDS_SLOT = sql`${omniTasks.status} in ('PENDING', 'SUBMITTED', 'PROCESSING') and ${omniTasks.queuedAt} is null`;
/** A task waiting for a slot that may still be dispatched: not past its deadline nor its cancel time. */
export const DISPATCHABLE = sql`${omniTasks.queuedAt} is not null and ${omniTasks.status} = 'PENDING'
  and ${omniTasks.deadlineAt} > now() and (${omniTasks.cancelAt} is null or ${omniTasks.cancelAt} > now())`;

type BudgetRow = typeof upstreamBudget.$inferSelect;

/** The limit in force: the adaptive one, never above the configured maximum, never below 1. */
export function limitOf(row: Pick<BudgetRow, 'limit'> | undefined, max: number): number {
  return Math.max(1, Math.floor(Math.min(row?.limit ?? max, max)));
}

const lockBudgetRow = (tx: Tx) => tx.select().from(upstreamBudget).where(eq(upstreamBudget.id, BUDGET_ROW)).for('update');

async function lockBudget(tx: Tx): Promise<BudgetRow> {
  const [row] = await lockBudgetRow(tx);
  if (row !== undefined) return row;
  await tx.insert(upstreamBudget).values({ id: BUDGET_ROW }).onConflictDoNothing();
  const [created] = await lockBudgetRow(tx);
  if (created === undefined) throw new Error('the upstream budget row is missing');
  return created;
}

/** Slots held per tenant (tenants holding none left out), from the maintained counts. */
const slotsByTenant = (db: Executor) =>
  db.execute(sql`select ${upstreamSlotCounts.tenantId} as tenant_id, sum(${upstreamSlotCounts.held})::int as n
                 from ${upstreamSlotCounts} where ${upstreamSlotCounts.held} <> 0 group by 1 having sum(${upstreamSlotCounts.held}) <> 0`);

function toSlots(result: unknown): Map<string, number> {
  return new Map(rowsOf<{ tenant_id: string; n: number }>(result).map((row) => [row.tenant_id, Number(row.n)]));
}

/**
 * The slots free under the budget, computed by the server (none while paused or without a budget
 * row): how many waiting tasks per tenant a pass reads, in the same round trip as the budget.
 * The same sum as `lockAndPick` makes from the rows it reads; the pause is judged by the clock
 * now (`clock_timestamp`, as `lockAndPick` does), not at the transaction's start, which may be
 * before a wait for a lock.
 */
const freeSlots = (maxInFlight: number) =>
  sql`coalesce((select case when b.paused_until > clock_timestamp() then 0
                            else greatest(0, greatest(1, floor(least(coalesce(b."limit", ${maxInFlight}::int), ${maxInFlight}::int)))::int
                                             - (select coalesce(sum(${upstreamSlotCounts.held}), 0) from ${upstreamSlotCounts})::int) end
                from upstream_budget b where b.id = ${BUDGET_ROW}), 0)`;

/** A waiting task, with its tenant's weight and when the tenant was last served (ms; -Infinity if never). */
export type Candidate = { id: string; tenantId: string; weight: number; queuedAt: Date; lastServed: number };

/**
 * The first `perTenant` dispatchable tasks of every tenant with tasks waiting, in the tenant's
 * dispatch order. The tenants come from the maintained counts (at most 16 rows per tenant, whatever
 * the task table holds; rows at zero are left out before grouping), and none at all when
 * `perTenant` is 0: a pass with the budget full reads nothing under the budget's lock.
 */
const candidatesQuery = (db: Executor, perTenant: number | SQL) =>
  db.execute(sql`with free as (select (${perTenant})::int as n)
      select q.id, q.tenant_id, tn.weight, q.queued_at, tu.last_served_at as last_served
      from (select ${upstreamSlotCounts.tenantId} as tenant_id from ${upstreamSlotCounts}
            where (select n from free) > 0 and ${upstreamSlotCounts.queued} <> 0
            group by 1 having sum(${upstreamSlotCounts.queued}) > 0) d
      join tenants tn on tn.id = d.tenant_id
      left join upstream_turns tu on tu.tenant_id = d.tenant_id
      cross join lateral (
        select ${omniTasks.id} as id, ${omniTasks.tenantId} as tenant_id, ${omniTasks.queuedAt} as queued_at
        from ${omniTasks}
        where ${omniTasks.tenantId} = d.tenant_id and ${DISPATCHABLE}
        order by ${PRIORITY_RANK}, ${omniTasks.queuedAt}, ${omniTasks.id}
        limit (select n from free)
      ) q`);

/** A dispatch pass's candidates read, as lockAndPick sends it (exported for a test of its plan). */
export const passCandidatesQuery = (db: Executor, maxInFlight: number) => candidatesQuery(db, freeSlots(maxInFlight));

function toCandidates(result: unknown): Candidate[] {
  const rows = rowsOf<{ id: string; tenant_id: string; weight: number; queued_at: string; last_served: string | null }>(result);
  return rows.map((row) => ({
    id: row.id,
    tenantId: row.tenant_id,
    weight: Number(row.weight),
    queuedAt: new Date(row.queued_at),
    lastServed: row.last_served === null ? Number.NEGATIVE_INFINITY : new Date(row.last_served).getTime(),
  }));
}

/** The first `perTenant` dispatchable tasks of every tenant with tasks waiting (queue positions). */
export async function candidates(db: Executor, perTenant: number): Promise<Candidate[]> {
  return toCandidates(await candidatesQuery(db, perTenant));
}

/** Tenants' waiting tasks, each tenant's in its own order, handed out one at a time by fair share. */
export type FairQueues = {
  /** The next task to go, given the slots each tenant holds now; null when none waits. */
  pick: (held: ReadonlyMap<string, number>) => Candidate | null;
};

/**
 * Weighted fair choice: the next slot goes to the tenant whose slots held are the smallest share
 * of its weight; among equal shares, to the tenant served least recently (round-robin, so a
 * tenant with many waiting tasks does not take every turn while shares are equal), then to the
 * oldest next task. A tenant's own tasks leave in its order (priority, then age), as `waiting`
 * lists them.
 */
export function fairQueues(waiting: readonly Candidate[]): FairQueues {
  const queues = new Map<string, { items: Candidate[]; next: number; lastServed: number }>();
  let clock = Date.now();
  for (const candidate of waiting) {
    const queue = queues.get(candidate.tenantId) ?? { items: [], next: 0, lastServed: candidate.lastServed };
    queue.items.push(candidate);
    queues.set(candidate.tenantId, queue);
    clock = Math.max(clock, candidate.lastServed);
  }
  return {
    pick(held) {
      let best: { share: number; head: Candidate; queue: { next: number; lastServed: number } } | null = null;
      for (const [tenantId, queue] of queues) {
        const head = queue.items[queue.next];
        if (head === undefined) continue;
        const share = (held.get(tenantId) ?? 0) / Math.max(1, head.weight);
        if (best === null || share < best.share) best = { share, head, queue };
        else if (share === best.share) {
          // Compared, not subtracted: two tenants never served are both -Infinity.
          const lessServed = queue.lastServed < best.queue.lastServed;
          const sameServed = queue.lastServed === best.queue.lastServed;
          if (lessServed || (sameServed && head.queuedAt < best.head.queuedAt)) best = { share, head, queue };
        }
      }
      if (best === null) return null;
      best.queue.next += 1;
      clock += 1;
      best.queue.lastServed = clock;
      return best.head;
    },
  };
}

/**
 * Weighted fair dispatch of `free` slots: each goes to the tenant whose slots held, counting those
 * picked in this pass, are the smallest share of its weight (fairQueues). This is deficit
 * round-robin over the resource the upstream counts (concurrent tasks): a tenant with 1,000
 * waiting tasks and 3 slots never delays another tenant's first task by more than the next free
 * slot.
 */
export function pickFair(free: number, waiting: readonly Candidate[], held: ReadonlyMap<string, number>): Candidate[] {
  const queues = fairQueues(waiting);
  const holding = new Map(held);
  const picked: Candidate[] = [];
  while (picked.length < free) {
    const next = queues.pick(holding);
    if (next === null) break;
    holding.set(next.tenantId, (holding.get(next.tenantId) ?? 0) + 1);
    picked.push(next);
  }
  return picked;
}

export type Claimed = { task: TaskRow; waitedMs: number };

/**
 * Under the budget row's lock: the waiting tasks the free slots go to now (none while paused after
 * a refusal; null when the budget row is missing). One round trip: the lock, the slots held and the
 * candidates go together, behind the `writes` sent first (a create's task), whose results come back
 * as `written`.
 */
async function lockAndPick(
  tx: Tx,
  maxInFlight: number,
  writes: readonly Startable[] = [],
): Promise<{ written: unknown[]; picked: Candidate[] | null; budget: BudgetRow | undefined }> {
  const results = await pipeline(...writes, lockBudgetRow(tx), slotsByTenant(tx), passCandidatesQuery(tx, maxInFlight));
  const written = results.slice(0, writes.length);
  const [budgetRows, slots, waiting] = results.slice(writes.length) as [BudgetRow[], unknown, unknown];
  const budget = budgetRows[0];
  if (budget === undefined) return { written, picked: null, budget };
  if (budget.pausedUntil !== null && budget.pausedUntil.getTime() > Date.now()) return { written, picked: [], budget };
  const held = toSlots(slots);
  let inFlight = 0;
  for (const n of held.values()) inFlight += n;
  const free = limitOf(budget, maxInFlight) - inFlight;
  return { written, picked: free <= 0 ? [] : pickFair(free, toCandidates(waiting), held), budget };
}

/** Records, under the budget lock, when these tenants (in the order their tasks were picked) were served. */
function markServed(tx: Tx, tenantIds: readonly string[]) {
  const last = new Map<string, number>();
  for (const [i, tenantId] of tenantIds.entries()) last.set(tenantId, i);
  // Not on the tenant row: a create holds that lock while it waits for the budget lock held here.
  const rows = [...last].map(([tenantId, i]) => sql`(${tenantId}::uuid, now() + make_interval(secs => ${i}::int / 1000.0))`);
  return tx.execute(sql`insert into upstream_turns as t (tenant_id, last_served_at) values ${sql.join(rows, sql`, `)}
                        on conflict (tenant_id) do update set last_served_at = excluded.last_served_at`);
}

/** Takes a task out of its queue with a create lease: it now holds an upstream slot. */
const claimQuery = (tx: Tx, taskIds: string[], leaseSeconds: number) =>
  tx
    .update(omniTasks)
    .set({ queuedAt: null, nextCheckAt: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(inArray(omniTasks.id, taskIds))
    .returning();

/**
 * In the creating transaction: sends the new task's `writes` (its row, its body) and, in the same
 * round trip, reads what a pass would pick now. Returns their results, whether the adaptive
 * limit is below its maximum now (`growLimit` has work to do), and the new task's pick if a pass
 * would take it now (a free slot, and its tenant's turn); `claimWrites` then claims it, sent
 * with the transaction's last statements. Claiming it here, under the budget lock and before
 * commit, keeps another pass (the dispatcher's tick) from taking it, so a create within the budget
 * is sent in its own request. Otherwise (or with no budget row, which a pass puts back) it waits.
 */
export async function insertAndPick(
  tx: Tx,
  writes: readonly Startable[],
  options: { taskId: string; maxInFlight: number },
): Promise<{ written: unknown[]; own: Candidate | null; limitShrunk: boolean }> {
  const { written, picked, budget } = await lockAndPick(tx, options.maxInFlight, writes);
  return { written, own: picked?.find((task) => task.id === options.taskId) ?? null, limitShrunk: budget?.limit !== null };
}

/** The writes that claim a picked task (its tenant served now, the task out of its queue with a create lease). */
export const claimWrites = (tx: Tx, own: Candidate, leaseSeconds: number) =>
  [markServed(tx, [own.tenantId]), claimQuery(tx, [own.id], leaseSeconds)] as const;

/**
 * One dispatch pass: the tasks this caller now holds slots for and must send. Each claimed task
 * carries a create lease (`leaseSeconds`): should the caller die before the upstream answers, the
 * reconciler looks the task up by its external id then, and sends it only if the upstream does not
 * know it.
 */
export async function claimDispatch(db: Db, options: { maxInFlight: number; leaseSeconds: number }): Promise<Claimed[]> {
  return db.transaction(async (tx) => {
    let { picked } = await lockAndPick(tx, options.maxInFlight);
    if (picked === null) {
      await lockBudget(tx); // puts the missing row back
      ({ picked } = await lockAndPick(tx, options.maxInFlight));
    }
    if (picked === null || picked.length === 0) return [];
    // A task being cancelled right now is locked: skipped here, it is cancelled or dispatched next time.
    const locked = await tx
      .select({ id: omniTasks.id, queuedAt: omniTasks.queuedAt })
      .from(omniTasks)
      .where(
        and(
          inArray(
            omniTasks.id,
            picked.map((task) => task.id),
          ),
          isNotNull(omniTasks.queuedAt),
          eq(omniTasks.status, 'PENDING'),
        ),
      )
      .for('update', { skipLocked: true });
    if (locked.length === 0) return [];
    const claimedIds = new Set(locked.map((task) => task.id));
    const [, tasks] = await pipeline(
      markServed(
        tx,
        picked.filter((task) => claimedIds.has(task.id)).map((task) => task.tenantId),
      ),
      claimQuery(
        tx,
        locked.map((task) => task.id),
        options.leaseSeconds,
      ),
    );
    const now = Date.now();
    const waited = new Map(locked.map((row) => [row.id, row.queuedAt]));
    return tasks.map((task) => ({ task, waitedMs: Math.max(0, now - (waited.get(task.id)?.getTime() ?? now)) }));
  });
}

/**
 * The upstream refused a claimed task for load (1303 or 429): the task goes back to the head of its
 * queue (its first queue time), the limit halves (at most once per cooldown) and dispatch pauses
 * briefly. Returns the task, or null if it is no longer PENDING.
 */
export async function requeueThrottled(
  db: Db,
  task: TaskRow,
  refusal: { code: string; message: string; retryAfterMs: number | null; maxInFlight: number },
): Promise<TaskRow | null> {
  return db.transaction(async (tx) => {
    const budget = await lockBudget(tx);
    const current = budget.limit ?? refusal.maxInFlight;
    const cooled = budget.decreasedAt === null || Date.now() - budget.decreasedAt.getTime() >= DECREASE_COOLDOWN_MS;
    const pauseMs = Math.min(MAX_PAUSE_MS, Math.max(THROTTLE_PAUSE_MS, refusal.retryAfterMs ?? 0));
    await tx
      .update(upstreamBudget)
      .set({
        ...(cooled ? { limit: Math.max(1, Math.floor(Math.min(current, refusal.maxInFlight) / 2)), decreasedAt: sql`now()` } : {}),
        pausedUntil: sql`greatest(coalesce(${upstreamBudget.pausedUntil}, now()), now() + make_interval(secs => ${pauseMs / 1000}))`,
        throttles: sql`${upstreamBudget.throttles} + 1`,
      })
      .where(eq(upstreamBudget.id, BUDGET_ROW));
    const [requeued] = await tx
      .update(omniTasks)
      .set({
        queuedAt: omniTasks.createdAt,
        // Only the deadline brings the reconciler to a waiting task.
        nextCheckAt: omniTasks.deadlineAt,
        statusMessage: storable(`Waiting for an upstream slot: the upstream is at capacity (${refusal.message})`),
      })
      .where(and(eq(omniTasks.id, task.id), eq(omniTasks.status, 'PENDING'), isNull(omniTasks.queuedAt)))
      .returning();
    await tx.insert(taskEvents).values({
      taskId: task.id,
      kind: 'upstream',
      source: 'dispatch',
      payload: storable({ error: refusal.code, message: refusal.message, requeued: requeued !== undefined }),
    });
    return requeued ?? null;
  });
}

/** Additive increase: an accepted create grows a shrunk limit by 1/limit (about one slot per limit's worth of creates). */
export async function growLimit(db: Db, maxInFlight: number): Promise<void> {
  await db
    .update(upstreamBudget)
    .set({
      limit: sql`case when ${upstreamBudget.limit} + 1.0 / ${upstreamBudget.limit} >= ${maxInFlight} then null
                      else ${upstreamBudget.limit} + 1.0 / ${upstreamBudget.limit} end`,
    })
    .where(and(eq(upstreamBudget.id, BUDGET_ROW), isNotNull(upstreamBudget.limit)));
}

export type BudgetState = { limit: number; inFlight: number; queued: number; throttles: number };

/** The limit in force now (the adaptive one, within the configured maximum). */
export async function currentLimit(db: Executor, maxInFlight: number): Promise<number> {
  const [row] = await db.select({ limit: upstreamBudget.limit }).from(upstreamBudget).where(eq(upstreamBudget.id, BUDGET_ROW));
  return limitOf(row, maxInFlight);
}

/** The budget as it is now (metrics, estimates): the limit in force, slots held, tasks waiting. */
export async function budgetState(db: Executor, maxInFlight: number): Promise<BudgetState> {
  const [row] = await queryRows<{ limit: number | null; in_flight: number; queued: number; throttles: number }>(
    db,
    sql`select (select "limit" from upstream_budget where id = ${BUDGET_ROW}) as limit,
               coalesce((select sum(held) from ${upstreamSlotCounts}), 0)::int as in_flight,
               coalesce((select sum(queued) from ${upstreamSlotCounts}), 0)::int as queued,
               coalesce((select throttles from upstream_budget where id = ${BUDGET_ROW}), 0)::int as throttles`,
  );
  return {
    limit: limitOf({ limit: row?.limit ?? null }, maxInFlight),
    inFlight: Number(row?.in_flight ?? 0),
    queued: Number(row?.queued ?? 0),
    throttles: Number(row?.throttles ?? 0),
  };
}
