import { and, eq, gt, inArray, isNotNull, isNull, lte, notInArray, or, sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { omniTasks, taskSubmissions } from '../db/schema.ts';
import type { KlingClient } from '../kling/client.ts';
import type { UpstreamCreateBody } from '../kling/body.ts';
import { createJobLoop } from '../jobs/loop.ts';
import type { Logger } from '../logger.ts';
import type { KlingTask } from '../kling/payload.ts';
import type { TaskCommands } from './commands.ts';
import { isFinal, nextCheckAfterAttempts, transitionFromUpstream } from './state.ts';
import type { TaskRow } from './state.ts';
import { upstreamIdOf } from './upstream-reads.ts';

export type ReconcilerOptions = {
  db: Db;
  tasks: Pick<TaskCommands, 'apply' | 'submit' | 'failAtDeadline'>;
  upstream: KlingClient;
  logger: Logger;
  taskDeadlineMinutes: number;
  /** Pause between ticks when there was nothing left to do. */
  intervalMs: number;
  /** Tasks leased per tick. */
  batchSize?: number;
  /** How long a lease keeps other instances off a task, should this one die while handling it. */
  leaseSeconds?: number;
  /** Told how each leased task was handled (metrics). */
  onCheck?: (outcome: ReconcilerOutcome | 'error') => void;
  /** Decides whether a leased task is past its deadline. */
  clock?: Clock;
};

type ReconcilerOutcome = 'changed' | 'unchanged' | 'deadline' | 'submitted' | 'failed';

const FINAL_STATUSES = ['SUCCEEDED', 'FAILED', 'CANCELLED'] as const;

/**
 * A task failed at its deadline is still looked at, since the upstream may yet finish (and bill)
 * it: a minute after the failure, then doubling up to an hour, until a day after the deadline.
 */
const AFTER_DEADLINE_FIRST_CHECK_SECONDS = 60;
const AFTER_DEADLINE_MAX_CHECK_SECONDS = 3_600;
const AFTER_DEADLINE_WATCH_MS = 24 * 60 * 60_000;

/** What handling one leased task needs. */
type Handling = Required<Pick<ReconcilerOptions, 'db' | 'tasks' | 'upstream' | 'logger' | 'taskDeadlineMinutes' | 'clock'>>;

export type Reconciler = {
  start(): void;
  /** Stops the loop and waits for the tick in progress (leased tasks are finished, not dropped). */
  stop(): Promise<void>;
  /** Leases the tasks that are due and handles them; resolves with how many it handled. */
  tick(): Promise<number>;
};

/** Takes the due tasks off other instances' hands for `leaseSeconds`: FOR UPDATE SKIP LOCKED, then a later next check. */
async function lease(db: Db, batchSize: number, leaseSeconds: number): Promise<TaskRow[]> {
  return db.transaction(async (tx) => {
    const due = await tx
      .select({ id: omniTasks.id })
      .from(omniTasks)
      // Due for news, or unfinished past the deadline whatever the backoff says: the deadline is enforced on time.
      // A task waiting in the upstream queue is the dispatcher's, until its deadline.
      .where(
        and(
          isNotNull(omniTasks.nextCheckAt),
          or(
            lte(omniTasks.nextCheckAt, sql`now()`),
            // ... except a PENDING task whose create is in flight (its lease runs): the create's
            // answer is recorded first, then the deadline is enforced with the upstream's word.
            and(
              lte(omniTasks.deadlineAt, sql`now()`),
              notInArray(omniTasks.status, [...FINAL_STATUSES]),
              sql`(${omniTasks.status} <> 'PENDING' or ${omniTasks.queuedAt} is not null)`,
            ),
          ),
          or(isNull(omniTasks.queuedAt), lte(omniTasks.deadlineAt, sql`now()`)),
        ),
      )
      .orderBy(omniTasks.nextCheckAt)
      .limit(batchSize)
      .for('update', { skipLocked: true });
    if (due.length === 0) return [];
    return tx
      .update(omniTasks)
      .set({
        nextCheckAt: sql`now() + make_interval(secs => ${leaseSeconds})`,
        checkAttempts: sql`${omniTasks.checkAttempts} + 1`,
      })
      .where(
        inArray(
          omniTasks.id,
          due.map((task) => task.id),
        ),
      )
      .returning();
  });
}

/** Puts an unfinished task's next look further away, growing with its attempts (no news this time). */
async function backOff(db: Db, taskId: string): Promise<void> {
  await db
    .update(omniTasks)
    .set({ nextCheckAt: nextCheckAfterAttempts })
    .where(and(eq(omniTasks.id, taskId), notInArray(omniTasks.status, [...FINAL_STATUSES])));
}

/** The next look at a task failed at its deadline: a minute after the first, doubling up to an hour. */
async function backOffAfterDeadline(db: Db, taskId: string): Promise<void> {
  const next = sql`now() + make_interval(secs => least(${AFTER_DEADLINE_MAX_CHECK_SECONDS}, ${AFTER_DEADLINE_FIRST_CHECK_SECONDS} * power(2, greatest(0, ${omniTasks.checkAttempts} - 1))))`;
  await db
    .update(omniTasks)
    .set({ nextCheckAt: next })
    .where(and(eq(omniTasks.id, taskId), eq(omniTasks.status, 'FAILED')));
}

/** Takes a final task off the reconciler's list. */
async function stopWatching(db: Db, taskId: string): Promise<void> {
  await db
    .update(omniTasks)
    .set({ nextCheckAt: null })
    .where(and(eq(omniTasks.id, taskId), inArray(omniTasks.status, [...FINAL_STATUSES])));
}

/** The stored upstream body of a task not yet accepted upstream. */
async function submission(db: Db, taskId: string): Promise<UpstreamCreateBody | null> {
  const [row] = await db.select({ body: taskSubmissions.body }).from(taskSubmissions).where(eq(taskSubmissions.taskId, taskId));
  return (row?.body as UpstreamCreateBody | undefined) ?? null;
}

/** Seconds the oldest due task has been waiting for a reconciler (0 when none is due), for /metrics. */
export async function reconcilerLagSeconds(db: Db): Promise<number> {
  const [row] = await db
    .select({ lag: sql<number | null>`extract(epoch from now() - min(${omniTasks.nextCheckAt}))::float8` })
    .from(omniTasks)
    .where(lte(omniTasks.nextCheckAt, sql`now()`));
  return Math.max(0, Number(row?.lag ?? 0));
}

/**
 * A task past its deadline. The upstream is asked once first: a task it finished is recorded as it
 * finished (a paid video is never dropped). Only if it has not finished, or cannot be asked, is
 * the task failed, and then still watched for a while (recheckAfterDeadline).
 */
async function enforceDeadline(h: Handling, task: TaskRow): Promise<ReconcilerOutcome> {
  let answer: KlingTask | null = null;
  let asked = false;
  try {
    answer = await h.upstream.getTask(upstreamIdOf(task), { maxAttempts: 1 });
    asked = true;
  } catch (error) {
    h.logger.info({ taskId: task.id, err: error }, 'reconciler: the upstream could not be asked before failing a task at its deadline');
  }
  const upstream = answer === null ? null : transitionFromUpstream(answer, 'poll');
  if (upstream !== null && isFinal(upstream.status)) {
    await h.tasks.apply(task.id, upstream);
    return 'changed';
  }
  // Still watched even when the upstream does not know it now: a create of unknown fate may yet land.
  const waited = asked && answer === null && task.queuedAt !== null;
  const message = waited
    ? `The task was still waiting for an upstream slot after ${h.taskDeadlineMinutes} minutes; the gateway gave it up.`
    : `The upstream gave no final state within ${h.taskDeadlineMinutes} minutes; the gateway gave the task up.`;
  await h.tasks.failAtDeadline(task.id, message, AFTER_DEADLINE_FIRST_CHECK_SECONDS);
  return 'deadline';
}

/**
 * A task failed at its deadline, looked at again until a day after it: a success the upstream
 * reports now turns it SUCCEEDED (the state machine allows this one move out of a final state).
 */
async function recheckAfterDeadline(h: Handling, task: TaskRow): Promise<ReconcilerOutcome> {
  const watched = task.status === 'FAILED' && h.clock.now() < task.deadlineAt.getTime() + AFTER_DEADLINE_WATCH_MS;
  const answer = watched ? await h.upstream.getTask(upstreamIdOf(task), { maxAttempts: 1 }) : null;
  if (answer !== null) {
    const result = await h.tasks.apply(task.id, transitionFromUpstream(answer, 'poll'));
    if (result?.changed) return 'changed';
    if (answer.status !== 'failed') {
      await backOffAfterDeadline(h.db, task.id);
      return 'unchanged';
    }
  }
  // Past the watch, failed upstream too, or unknown there: nothing more will come.
  await stopWatching(h.db, task.id);
  return 'unchanged';
}

/** A PENDING task the upstream does not know: submits it again under the same external id. */
async function resubmit(h: Handling, task: TaskRow): Promise<ReconcilerOutcome> {
  const body = await submission(h.db, task.id);
  if (body === null) {
    // Only if still PENDING: a callback of an accepted earlier attempt clears the body as it moves the task on.
    await h.tasks.apply(task.id, {
      status: 'FAILED',
      statusMessage: 'The task never reached the upstream and its request is no longer available.',
      source: 'reconciler',
      onlyFrom: ['PENDING'],
    });
    return 'failed';
  }
  // submit() holds the create lease while the create runs, records the answer, fails the task on a
  // definite refusal, or backs off.
  try {
    await h.tasks.submit(task, body, 'reconciler');
    return 'submitted';
  } catch (error) {
    h.logger.info({ taskId: task.id, err: error }, 'a retried create was refused upstream');
    return 'failed';
  }
}

async function handle(h: Handling, task: TaskRow): Promise<ReconcilerOutcome> {
  if (isFinal(task.status)) return recheckAfterDeadline(h, task);
  // A task waiting for a slot is leased only at its deadline (by the database's clock): never sent
  // from here, whatever this process's clock says, or it would bypass the queue and the budget.
  if (task.deadlineAt.getTime() <= h.clock.now() || task.queuedAt !== null) return enforceDeadline(h, task);
  // Ask by our id (the external task id) while the upstream id is unknown: a create whose answer
  // was lost is found this way instead of being submitted a second time.
  const answer = await h.upstream.getTask(upstreamIdOf(task));
  if (answer !== null) {
    const result = await h.tasks.apply(task.id, transitionFromUpstream(answer, 'poll'));
    if (result?.changed) return 'changed';
    await backOff(h.db, task.id);
    return 'unchanged';
  }
  if (task.status !== 'PENDING') {
    h.logger.warn({ taskId: task.id, upstreamTaskId: task.upstreamTaskId }, 'the upstream does not know a submitted task');
    await backOff(h.db, task.id);
    return 'unchanged';
  }
  return resubmit(h, task);
}

/**
 * On an instance's first tick, and after an outage: every task running upstream is due now.
 * Callbacks sent while an instance was down or without its database are lost, and a task whose
 * last news was a callback is next polled 20 s later (state.ts); this brings that poll
 * forward. Tasks running upstream hold upstream slots, so there are at most UPSTREAM_MAX_IN_FLIGHT
 * of them: a small, bounded read each. Tasks already polled since their last change (being polled
 * now, or backing off) keep their schedule.
 */
async function checkInFlightNow(db: Db): Promise<void> {
  await db
    .update(omniTasks)
    .set({ nextCheckAt: sql`now()` })
    // check_attempts is 0 only between a change and the next poll: a task another instance's
    // reconciler has leased (which counts the attempt) is left to it.
    .where(
      and(inArray(omniTasks.status, ['SUBMITTED', 'PROCESSING']), gt(omniTasks.nextCheckAt, sql`now()`), eq(omniTasks.checkAttempts, 0)),
    );
}

/**
 * The background worker of every instance: polls the upstream for tasks whose last news is older
 * than their backoff, retries creates that never reached the upstream, fails tasks past their
 * deadline and watches those for a late success a while longer. Due tasks are leased with FOR
 * UPDATE SKIP LOCKED, so each is handled by one instance.
 */
export function createReconciler(options: ReconcilerOptions): Reconciler {
  const { db, logger } = options;
  const batchSize = options.batchSize ?? 20;
  const leaseSeconds = options.leaseSeconds ?? 60;
  const handling: Handling = { ...options, clock: options.clock ?? systemClock };

  // At start, and again once the database answers after failing this job (an outage, during which
  // this instance answered callbacks with 503), every task running upstream is polled at once.
  let catchUp = true;
  async function tick(): Promise<number> {
    let leased: TaskRow[];
    try {
      if (catchUp) await checkInFlightNow(db);
      catchUp = false;
      leased = await lease(db, batchSize, leaseSeconds);
    } catch (error) {
      catchUp = true;
      throw error;
    }
    await Promise.all(
      leased.map((task) =>
        handle(handling, task).then(
          (outcome) => options.onCheck?.(outcome),
          async (error: unknown) => {
            options.onCheck?.('error');
            logger.warn({ err: error, taskId: task.id }, 'reconciler: task check failed; backing off');
            await backOff(db, task.id).catch(() => {});
          },
        ),
      ),
    );
    return leased.length;
  }

  return {
    ...createJobLoop({ name: 'reconciler', tick, batchSize, intervalMs: options.intervalMs, logger }),
    tick,
  };
}
