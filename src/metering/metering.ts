import { and, asc, eq, gte, inArray, lt, sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { PriceTable } from '../config.ts';
import type { Db, Executor, Tx } from '../db/database.ts';
import { queryRows } from '../db/database.ts';
import { keysetPast } from '../db/keyset.ts';
import { omniTasks, tenants, usageEvents, usageRollups } from '../db/schema.ts';
import { InvalidInputError, QuotaExceededError } from '../errors.ts';
import type { TenantLimits } from '../tasks/commands.ts';
import type { NormalizedOmniRequest } from '../tasks/create-input.ts';
import type { TaskRow, Transition } from '../tasks/state.ts';

export type UsageEvent = typeof usageEvents.$inferSelect;
export type Mode = 'STD' | 'PRO';

export type UsageSummary = {
  succeededTasks: number;
  failedTasks: number;
  videoSeconds: number;
  units: number;
  byMode: { mode: Mode; tasks: number; videoSeconds: number; units: number }[];
};

/** A base-video edit's output is as long as its input, which Kling caps at 10 s. */
const MAX_EDIT_SECONDS = 10;
const IN_FLIGHT = ['PENDING', 'SUBMITTED', 'PROCESSING'] as const;

function rateFor(prices: PriceTable, mode: Mode, hasVideoInput: boolean): number {
  if (hasVideoInput) return mode === 'STD' ? prices.STD_VIDEO : prices.PRO_VIDEO;
  return mode === 'STD' ? prices.STD : prices.PRO;
}

/** The seconds a request may produce, reserved against the monthly limit while it is in flight. */
function reservedSeconds(durationSeconds: number | null): number {
  return durationSeconds ?? MAX_EDIT_SECONDS;
}

/** Output seconds of a finished task: the result's duration, else the requested one, else the edit cap. */
function outputSeconds(task: TaskRow): { seconds: number; source: 'result' | 'requested' | 'assumed_max' } {
  const durations = task.videos.map((video) => video.durationSeconds);
  if (durations.length > 0 && durations.every((d): d is number => d !== null && Number.isFinite(d) && d > 0)) {
    return { seconds: durations.reduce((sum, d) => sum + d, 0), source: 'result' };
  }
  if (task.durationSeconds !== null) return { seconds: task.durationSeconds, source: 'requested' };
  return { seconds: MAX_EDIT_SECONDS, source: 'assumed_max' };
}

/** [start of the month of `now`, start of the next month) in UTC. */
function monthOf(now: Date): { from: Date; to: Date } {
  return {
    from: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)),
    to: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)),
  };
}

/**
 * Admits a create or throws QuotaExceededError. Runs inside the creating transaction, after it has
 * taken the tenant's row lock (FOR NO KEY UPDATE) and read the tenant's limits with it, so
 * concurrent creates of one tenant are checked one at a time and can never overshoot together.
 */
async function admit(
  tx: Tx,
  tenantId: string,
  request: NormalizedOmniRequest,
  tenant: TenantLimits,
  month: { from: Date; to: Date },
): Promise<void> {
  if (tenant.seconds === null && tenant.concurrent === null) return;
  // Both reads in one round trip: the tasks in flight and, for a seconds limit, the month's usage.
  const [[inFlight], used] = await Promise.all([
    queryRows<{ count: number; reserved: number }>(
      tx,
      sql`select count(*)::int as count,
                 coalesce(sum(coalesce(${omniTasks.durationSeconds}, ${MAX_EDIT_SECONDS})), 0)::float8 as reserved
          from ${omniTasks}
          where ${omniTasks.tenantId} = ${tenantId} and ${inArray(omniTasks.status, [...IN_FLIGHT])}`,
    ),
    tenant.seconds === null ? [] : totals(tx, tenantId, month),
  ]);
  const count = Number(inFlight?.count ?? 0);
  if (tenant.concurrent !== null && count >= tenant.concurrent) {
    throw new QuotaExceededError(
      `Concurrent task limit reached: ${count} of ${tenant.concurrent} tasks are in flight; ` +
        'a new task is admitted once one of them finishes.',
    );
  }
  if (tenant.seconds !== null) {
    const committed =
      used.filter((row) => row.kind === 'video').reduce((sum, row) => sum + Number(row.seconds), 0) + Number(inFlight?.reserved ?? 0);
    const wanted = reservedSeconds(request.durationSeconds);
    if (committed + wanted > tenant.seconds) {
      const left = Math.max(0, tenant.seconds - committed);
      throw new QuotaExceededError(
        `Monthly video seconds limit reached: ${tenant.seconds} s per month, ${committed} s used or reserved ` +
          `by tasks in flight, this request needs ${wanted} s; ${left} s left this month.`,
      );
    }
  }
}

const DAY_MS = 86_400_000;

type TotalRow = { kind: string; mode: Mode; tasks: number; seconds: number; units: number };

/**
 * A tenant's usage in [from, to) per kind and mode: the whole UTC days inside the range from the
 * rollups (a few rows a day, whatever the ledger holds), the parts of a day at either edge from the
 * ledger itself (at most two days of it).
 */
async function totals(executor: Executor, tenantId: string, range: { from: Date; to: Date }): Promise<TotalRow[]> {
  const firstDay = new Date(Math.ceil(range.from.getTime() / DAY_MS) * DAY_MS);
  const endDay = new Date(Math.floor(range.to.getTime() / DAY_MS) * DAY_MS);
  const ledger = (from: Date, to: Date) =>
    sql`select ${usageEvents.kind} as kind, ${usageEvents.mode} as mode, count(*)::int as tasks,
               coalesce(sum(${usageEvents.videoSeconds}), 0)::float8 as seconds, coalesce(sum(${usageEvents.units}), 0)::float8 as units
        from ${usageEvents}
        where ${usageEvents.tenantId} = ${tenantId}
          and ${usageEvents.occurredAt} >= ${from.toISOString()}::timestamptz and ${usageEvents.occurredAt} < ${to.toISOString()}::timestamptz
        group by 1, 2`;
  const parts =
    firstDay < endDay
      ? [
          ledger(range.from, firstDay),
          sql`select ${usageRollups.kind} as kind, ${usageRollups.mode} as mode, sum(${usageRollups.events})::int as tasks,
                     sum(${usageRollups.videoSeconds})::float8 as seconds, sum(${usageRollups.units})::float8 as units
              from ${usageRollups}
              where ${usageRollups.tenantId} = ${tenantId}
                and ${usageRollups.day} >= ${firstDay.toISOString().slice(0, 10)}::date and ${usageRollups.day} < ${endDay.toISOString().slice(0, 10)}::date
              group by 1, 2`,
          ledger(endDay, range.to),
        ]
      : [ledger(range.from, range.to)];
  const rows = await queryRows<TotalRow>(
    executor,
    sql`select kind, mode, sum(tasks)::int as tasks, sum(seconds)::float8 as seconds, sum(units)::float8 as units
        from (${sql.join(parts, sql` union all `)}) part group by 1, 2`,
  );
  return rows.filter((row) => Number(row.tasks) !== 0);
}

export type CostEstimate = {
  units: number;
  videoSeconds: number;
  remainingMonthlySeconds: number | null;
  inFlightTasks: number;
  maxConcurrentTasks: number | null;
};

/**
 * The cost of a request at the price table, as the usage event of its success will count it (a
 * base-video edit at its 10 s cap, its actual length being known only from the result), and the
 * tenant's room: seconds left this month after usage and tasks in flight, tasks in flight.
 */
async function estimate(
  db: Db,
  prices: PriceTable,
  tenantId: string,
  request: NormalizedOmniRequest,
  month: { from: Date; to: Date },
): Promise<CostEstimate> {
  const seconds = reservedSeconds(request.durationSeconds);
  const rate = rateFor(prices, request.mode, request.referenceVideos.length > 0);
  const [row] = await queryRows<{
    seconds_limit: number | null;
    concurrent: number | null;
    in_flight: number;
    reserved: number;
  }>(
    db,
    sql`select t.monthly_video_seconds_limit as seconds_limit, t.max_concurrent_tasks as concurrent,
               (select count(*)::int from ${omniTasks} where ${omniTasks.tenantId} = t.id and ${inArray(omniTasks.status, [...IN_FLIGHT])}) as in_flight,
               (select coalesce(sum(coalesce(${omniTasks.durationSeconds}, ${MAX_EDIT_SECONDS})), 0)::float8 from ${omniTasks}
                 where ${omniTasks.tenantId} = t.id and ${inArray(omniTasks.status, [...IN_FLIGHT])}) as reserved
        from ${tenants} t where t.id = ${tenantId}`,
  );
  const limit = row?.seconds_limit ?? null;
  const used =
    limit === null
      ? 0
      : (await totals(db, tenantId, month)).filter((r) => r.kind === 'video').reduce((sum, r) => sum + Number(r.seconds), 0);
  return {
    units: Math.round(seconds * rate * 1e6) / 1e6,
    videoSeconds: seconds,
    remainingMonthlySeconds: limit === null ? null : Math.max(0, Number(limit) - used - Number(row?.reserved ?? 0)),
    inFlightTasks: Number(row?.in_flight ?? 0),
    maxConcurrentTasks: row?.concurrent ?? null,
  };
}

async function summary(db: Db, tenantId: string, range: { from: Date; to: Date }): Promise<UsageSummary> {
  const rows = await totals(db, tenantId, range);
  const video = rows.filter((row) => row.kind === 'video');
  const round = (value: number) => Math.round(value * 1e6) / 1e6;
  return {
    succeededTasks: video.reduce((sum, row) => sum + Number(row.tasks), 0),
    failedTasks: rows.filter((row) => row.kind === 'failure').reduce((sum, row) => sum + Number(row.tasks), 0),
    videoSeconds: round(video.reduce((sum, row) => sum + Number(row.seconds), 0)),
    units: round(video.reduce((sum, row) => sum + Number(row.units), 0)),
    byMode: (['STD', 'PRO'] as const).map((mode) => {
      const row = video.find((candidate) => candidate.mode === mode);
      return {
        mode,
        tasks: Number(row?.tasks ?? 0),
        videoSeconds: round(Number(row?.seconds ?? 0)),
        units: round(Number(row?.units ?? 0)),
      };
    }),
  };
}

/** `clock` decides which calendar month quotas and default usage ranges count. */
export function createMeteringService(deps: { db: Db; prices: PriceTable; clock?: Clock }) {
  const { db, prices } = deps;
  const clock = deps.clock ?? systemClock;
  /** [start of this month, start of next month) in UTC. */
  const currentMonth = () => monthOf(new Date(clock.now()));

  return {
    currentMonth,

    /** [from, to) of a usage query: the current month by default; from a given `from`, up to now. */
    usageRange(args: { from?: Date | null; to?: Date | null }): { from: Date; to: Date } {
      const month = currentMonth();
      const range = { from: args.from ?? month.from, to: args.to ?? (args.from ? new Date(clock.now()) : month.to) };
      if (range.from >= range.to) {
        throw new InvalidInputError('"from" must be before "to".', [{ path: ['from'], message: 'must be before "to"' }]);
      }
      return range;
    },

    admit: (tx: Tx, tenantId: string, request: NormalizedOmniRequest, limits: TenantLimits) =>
      admit(tx, tenantId, request, limits, currentMonth()),

    /** A final-state hook: records the task's final state in the ledger, in its transaction; a repeat is a no-op. */
    async recordUsage(tx: Tx, task: TaskRow, transition: Transition): Promise<void> {
      const rate = rateFor(prices, task.mode, task.hasVideoInput);
      const common = {
        tenantId: task.tenantId,
        taskId: task.id,
        mode: task.mode,
        hasVideoInput: task.hasVideoInput,
        rate,
        upstreamUnits: transition.upstreamUnits ?? null,
      };
      const values =
        task.status === 'SUCCEEDED'
          ? (() => {
              const { seconds, source } = outputSeconds(task);
              return { ...common, kind: 'video' as const, videoSeconds: seconds, secondsSource: source, units: seconds * rate };
            })()
          : { ...common, kind: 'failure' as const, videoSeconds: 0, secondsSource: 'none' as const, units: 0 };
      if (values.kind === 'video') {
        // A task failed at its deadline that the upstream finished after all (tasks/late-success.ts)
        // counts as succeeded, not as both: its failure record (0 units) gives way to the video.
        await tx.delete(usageEvents).where(and(eq(usageEvents.taskId, task.id), eq(usageEvents.kind, 'failure')));
      }
      await tx
        .insert(usageEvents)
        .values(values)
        .onConflictDoNothing({ target: [usageEvents.taskId, usageEvents.kind] });
      // The task shows its cost (OmniTask.units) from the same figures, in the same transaction.
      await tx.update(omniTasks).set({ units: values.units }).where(eq(omniTasks.id, task.id));
    },

    /** What a request would cost and how much of the tenant's limits it would find free: nothing is written. */
    estimate: (tenantId: string, request: NormalizedOmniRequest) => estimate(db, prices, tenantId, request, currentMonth()),

    summary: (tenantId: string, range: { from: Date; to: Date }) => summary(db, tenantId, range),

    /** One page of ledger rows in (occurred_at, id) order; null tenant means every tenant (admin). */
    async events(
      tenantId: string | null,
      range: { from: Date; to: Date },
      after: { occurredAt: Date; id: string } | null,
      limit: number,
    ): Promise<UsageEvent[]> {
      return db
        .select()
        .from(usageEvents)
        .where(
          and(
            tenantId === null ? undefined : eq(usageEvents.tenantId, tenantId),
            gte(usageEvents.occurredAt, range.from),
            lt(usageEvents.occurredAt, range.to),
            after === null ? undefined : keysetPast([usageEvents.occurredAt, usageEvents.id], [after.occurredAt, after.id], 'asc'),
          ),
        )
        .orderBy(asc(usageEvents.occurredAt), asc(usageEvents.id))
        .limit(limit);
    },
  };
}

export type MeteringService = ReturnType<typeof createMeteringService>;
