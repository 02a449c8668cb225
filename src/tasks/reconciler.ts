import { and, eq, inArray, isNotNull, lte, or, sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { omniTasks, taskSubmissions } from '../db/schema.ts';
import type { KlingClient } from '../kling/client.ts';
import type { UpstreamCreateBody } from '../kling/body.ts';
import { createJobLoop } from '../jobs/loop.ts';
import type { Logger } from '../logger.ts';
import type { TaskCommands } from './commands.ts';
import { isFinal, nextCheckAfterAttempts, transitionFromUpstream } from './state.ts';
import type { TaskRow } from './state.ts';

export type ReconcilerOptions = {
  db: Db;
  tasks: Pick<TaskCommands, 'apply' | 'submit'>;
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
      // Due for news, or past the deadline whatever the backoff says: the deadline is enforced on time.
      .where(
        and(
          isNotNull(omniTasks.nextCheckAt),
          or(lte(omniTasks.nextCheckAt, sql`now()`), lte(omniTasks.deadlineAt, sql`now()`)),
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
      .where(inArray(omniTasks.id, due.map((task) => task.id)))
      .returning();
  });
}

/** Puts a task's next look further away, growing with its attempts (no news this time). */
async function backOff(db: Db, taskId: string): Promise<void> {
  await db.update(omniTasks).set({ nextCheckAt: nextCheckAfterAttempts }).where(eq(omniTasks.id, taskId));
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
 * The background worker of every instance: polls the upstream for tasks whose last news is older
 * than their backoff, retries creates that never reached the upstream, and fails tasks past their
 * deadline. Due tasks are leased with FOR UPDATE SKIP LOCKED, so each is handled by one instance.
 */
export function createReconciler(options: ReconcilerOptions): Reconciler {
  const { db, tasks, upstream, logger } = options;
  const batchSize = options.batchSize ?? 20;
  const leaseSeconds = options.leaseSeconds ?? 60;
  const clock = options.clock ?? systemClock;

  async function handle(task: TaskRow): Promise<ReconcilerOutcome> {
    if (isFinal(task.status)) return 'unchanged';
    if (task.deadlineAt.getTime() <= clock.now()) {
      await tasks.apply(task.id, {
        status: 'FAILED',
        statusMessage: `The upstream gave no final state within ${options.taskDeadlineMinutes} minutes; the gateway gave the task up.`,
        source: 'deadline',
      });
      return 'deadline';
    }
    // Ask by our id (the external task id) while the upstream id is unknown: a create whose answer
    // was lost is found this way instead of being submitted a second time.
    const answer = await upstream.getTask(
      task.upstreamTaskId !== null ? { taskId: task.upstreamTaskId } : { externalTaskId: task.id },
    );
    if (answer !== null) {
      const result = await tasks.apply(task.id, transitionFromUpstream(answer, 'poll'));
      if (result?.changed) return 'changed';
      await backOff(db, task.id);
      return 'unchanged';
    }
    if (task.status !== 'PENDING') {
      logger.warn({ taskId: task.id, upstreamTaskId: task.upstreamTaskId }, 'the upstream does not know a submitted task');
      await backOff(db, task.id);
      return 'unchanged';
    }
    const body = await submission(db, task.id);
    if (body === null) {
      await tasks.apply(task.id, {
        status: 'FAILED',
        statusMessage: 'The task never reached the upstream and its request is no longer available.',
        source: 'reconciler',
      });
      return 'failed';
    }
    // submit() records the answer, fails the task on a definite refusal, or backs off.
    try {
      await tasks.submit(task, body, 'reconciler');
      return 'submitted';
    } catch (error) {
      logger.info({ taskId: task.id, err: error }, 'a retried create was refused upstream');
      return 'failed';
    }
  }

  async function tick(): Promise<number> {
    const leased = await lease(db, batchSize, leaseSeconds);
    await Promise.all(
      leased.map((task) =>
        handle(task).then(
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
