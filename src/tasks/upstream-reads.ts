import { and, eq, gt, inArray, isNotNull, ne, sql } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { storable } from '../db/storable.ts';
import { omniTasks, taskEvents } from '../db/schema.ts';
import { UpstreamError } from '../errors.ts';
import { KlingError } from '../kling/errors.ts';
import type { CallLimits, KlingClient } from '../kling/client.ts';
import type { KlingTask } from '../kling/payload.ts';
import type { Logger } from '../logger.ts';
import { transitionFromUpstream } from './state.ts';
import type { TaskRow, Transition } from './state.ts';

/** A refresh this soon after the task's last upstream read answers from the stored state. */
export const REFRESH_MIN_INTERVAL_MS = 5_000;
/** How long a callback waits for the upstream to confirm its final status before leaving it to the reconciler. */
export const CALLBACK_CONFIRM_TIMEOUT_MS = 3_000;

const CONFIRM_SOURCE = 'webhook-confirm';
/** The task events that record an upstream read: the reconciler's polls, refreshes and callback confirmations. */
const READ_SOURCES = ['poll', 'refresh', CONFIRM_SOURCE];

type Applied = { task: TaskRow; changed: boolean };

export type UpstreamReadDeps = {
  db: Db;
  upstream: KlingClient;
  logger: Logger;
  apply: (taskId: string, transition: Transition) => Promise<Applied | null>;
};

/** How the upstream knows a task: by its id once we have it, else by ours (the external task id). */
export function upstreamIdOf(task: TaskRow): { taskId: string } | { externalTaskId: string } {
  return task.upstreamTaskId !== null ? { taskId: task.upstreamTaskId } : { externalTaskId: task.id };
}

/** Runs one piece of work per key at a time: callers that arrive while it runs share its promise. */
function coalescing<T>() {
  const running = new Map<string, Promise<T>>();
  return (key: string, work: () => Promise<T>): { result: Promise<T>; first: boolean } => {
    const current = running.get(key);
    if (current !== undefined) return { result: current, first: false };
    const result = work().finally(() => running.delete(key));
    running.set(key, result);
    return { result, first: true };
  };
}

/** Whether the upstream was read about the task within the last REFRESH_MIN_INTERVAL_MS (on any instance). */
async function readRecently(db: Db, taskId: string): Promise<boolean> {
  const rows = await db
    .select({ id: taskEvents.id })
    .from(taskEvents)
    .where(
      and(
        eq(taskEvents.taskId, taskId),
        eq(taskEvents.kind, 'upstream'),
        inArray(taskEvents.source, READ_SOURCES),
        gt(taskEvents.createdAt, sql`now() - make_interval(secs => ${REFRESH_MIN_INTERVAL_MS / 1000})`),
      ),
    )
    .limit(1);
  return rows.length > 0;
}

/** Keeps a callback's body in the audit trail, whatever is made of it. */
async function recordCallback(db: Db, taskId: string, payload: unknown): Promise<void> {
  await db.insert(taskEvents).values({ taskId, kind: 'upstream', source: 'webhook', payload: storable(payload) as object });
}

/**
 * Makes a task due for the reconciler now, unless it is not watched (final) or still PENDING (a
 * create may be in flight under its lease; the reconciler looks it up when the lease ends).
 */
async function dueNow(db: Db, taskId: string): Promise<void> {
  await db
    .update(omniTasks)
    .set({ nextCheckAt: sql`now()` })
    .where(and(eq(omniTasks.id, taskId), isNotNull(omniTasks.nextCheckAt), ne(omniTasks.status, 'PENDING')));
}

/**
 * The upstream reads made on behalf of clients and callbacks, rationed: concurrent reads of one
 * task on this instance share one request, and a refresh right after a read answers from the
 * stored state.
 */
export function createUpstreamReads(deps: UpstreamReadDeps) {
  const { db, upstream, logger } = deps;
  const shared = coalescing<Applied | null>();

  async function readAndApply(task: TaskRow, source: string, limits?: CallLimits): Promise<Applied | null> {
    const answer = await upstream.getTask(upstreamIdOf(task), limits);
    return answer === null ? null : deps.apply(task.id, transitionFromUpstream(answer, source));
  }

  return {
    /** Asks the upstream for the task's state and applies the answer; the task as it is afterwards. */
    async refresh(task: TaskRow): Promise<TaskRow> {
      if (await readRecently(db, task.id)) return task;
      try {
        return (await shared(`refresh:${task.id}`, () => readAndApply(task, 'refresh')).result)?.task ?? task;
      } catch (error) {
        if (error instanceof KlingError) throw new UpstreamError(error.message, error.code, error.retryable);
        throw error;
      }
    },

    /**
     * A callback reporting a final status is a hint, never the record: one quick upstream read
     * (shared by the callbacks of the task that arrive meanwhile) decides the status, the videos
     * and the seconds. `changed` is true for the callback whose read changed the task. When the
     * upstream cannot answer now, the task is left to the reconciler, due at once.
     */
    async confirmFinal(task: TaskRow, callback: KlingTask): Promise<{ changed: boolean }> {
      await recordCallback(db, task.id, callback.raw);
      // A success is final; so is a failure, unless the upstream now reports a success (late-success.ts).
      if (task.status === 'SUCCEEDED' || (task.status === 'FAILED' && callback.status === 'failed')) return { changed: false };
      const limits = { timeoutMs: CALLBACK_CONFIRM_TIMEOUT_MS, maxAttempts: 1 };
      const read = shared(`confirm:${task.id}`, () => readAndApply(task, CONFIRM_SOURCE, limits));
      try {
        const applied = await read.result;
        return { changed: read.first && (applied?.changed ?? false) };
      } catch (error) {
        if (!(error instanceof KlingError)) throw error;
        logger.warn({ taskId: task.id, code: error.code }, 'a final callback could not be confirmed upstream; the reconciler will');
        await dueNow(db, task.id);
        return { changed: false };
      }
    },
  };
}

export type UpstreamReads = ReturnType<typeof createUpstreamReads>;
