import { Repeater } from 'graphql-yoga';
import { NotFoundError, SubscriptionLimitError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Logger } from '../logger.ts';
import type { FeedSignal, TaskFeed } from '../pubsub/task-feed.ts';
import type { TaskReads } from './reads.ts';
import { isFinal } from './state.ts';
import type { TaskRow } from './state.ts';

// Tenant-wide watchers remember the last version they sent per task; beyond this many tasks the
// oldest entries are forgotten (at worst a task is then re-sent once after a resync).
const REMEMBERED_TASKS = 10_000;
// Recent shared reads kept for subscribers that drain their signals a little later than others.
const SHARED_READS = 2_000;
// After a feed interruption, tasks changed since this long before the last known change are re-read.
const RESYNC_MARGIN_MS = 5_000;
// After a failed read a watcher reads again on its own, first after up to this long, doubling up to the
// cap: a read can fail after the last signal that would have prompted it (a resync that raced the
// database's return), and a watcher must not then wait for a change that already happened.
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;

/** Buffers feed signals from the moment it is created, so nothing is lost between a read and a wait. */
function signalQueue(feed: TaskFeed, tenantId: string, accept: (signal: FeedSignal) => boolean) {
  let pending: FeedSignal[] = [];
  let wake: (() => void) | null = null;
  let stopped = false;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let failures = 0;
  const enqueue = (signal: FeedSignal) => {
    pending.push(signal);
    wake?.();
  };
  const unsubscribeFeed = feed.subscribe(tenantId, (signal) => {
    if (accept(signal)) enqueue(signal);
  });
  return {
    unsubscribe(): void {
      if (retryTimer !== null) clearTimeout(retryTimer);
      retryTimer = null;
      unsubscribeFeed();
    },
    /** A read failed: queue a resync of our own after a growing delay (one pending at a time). */
    retryLater(): void {
      if (retryTimer !== null || stopped) return;
      // Jittered, so that thousands of watchers failing at once do not all read again at once.
      const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures) * (0.5 + Math.random() / 2);
      failures += 1;
      retryTimer = setTimeout(() => {
        retryTimer = null;
        enqueue({ kind: 'resync' });
      }, delay);
    },
    /** A read succeeded: the next failure retries quickly again. */
    readSucceeded(): void {
      failures = 0;
    },
    /**
     * Makes `drain` return null once `stop` settles. Subscribed to once: a reaction attached on
     * every drain to a promise that settles only at the end would pile up for a subscription's life.
     */
    stopWith(stop: Promise<unknown>): void {
      void stop.then(() => {
        stopped = true;
        wake?.();
      });
    },
    /** Every signal received since the last call; waits for one if there is none. Null when stopped. */
    async drain(): Promise<FeedSignal[] | null> {
      if (pending.length === 0 && !stopped) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
      if (stopped) return null;
      const signals = pending;
      pending = [];
      return signals;
    },
  };
}

type WatchDeps = {
  feed: TaskFeed;
  tasks: Pick<TaskReads, 'byId' | 'changedSince'>;
  logger: Logger;
  /** Live subscriptions a tenant may hold on this instance; 0 = no cap. */
  maxPerTenant?: number;
  /** Wall-clock time: a tenant-wide watcher's resync reads what changed since shortly before it started. */
  clock?: Clock;
};

/** What every watcher of one instance shares: the subscription count and the reads of announced changes. */
type Watchers = Omit<WatchDeps, 'clock'> & {
  clock: Clock;
  claim(tenantId: string): () => void;
  readAnnounced(tenantId: string, taskId: string, version: number): Promise<TaskRow | null>;
  read(tenantId: string, taskId: string, signals: FeedSignal[]): Promise<TaskRow | null | 'unavailable'>;
};

/**
 * The task's current state at once, then each change (changes faster than a read coalesce
 * into the latest state; versions only grow), ending after a final state. Throws NotFoundError
 * for an id that is not the tenant's.
 */
async function watchTask(watch: Watchers, tenantId: string, taskId: string): Promise<AsyncIterable<TaskRow>> {
  const { feed, tasks } = watch;
  const release = watch.claim(tenantId);
  const queue = signalQueue(
    feed,
    tenantId,
    (signal) => signal.kind !== 'change' || signal.change.taskId === taskId,
  );
  let current: TaskRow | null;
  try {
    current = await tasks.byId(tenantId, taskId);
  } catch (error) {
    queue.unsubscribe();
    release();
    throw error;
  }
  if (current === null) {
    queue.unsubscribe();
    release();
    throw new NotFoundError('No task has this id.');
  }
  const first = current;
  return new Repeater<TaskRow>(async (push, stop) => {
    queue.stopWith(stop);
    try {
      let last = first;
      await push(last);
      while (!isFinal(last.status)) {
        const signals = await queue.drain();
        if (signals === null || signals.some((signal) => signal.kind === 'closed')) break;
        const fresh = await watch.read(tenantId, taskId, signals);
        if (fresh === 'unavailable') {
          queue.retryLater();
          continue;
        }
        queue.readSucceeded();
        if (fresh === null) break;
        if (fresh.version > last.version) {
          last = fresh;
          await push(fresh);
        }
      }
    } finally {
      queue.unsubscribe();
      release();
      stop();
    }
  });
}

/** Every change of every task of the tenant, creations included, from now on. */
function watchTenant(watch: Watchers, tenantId: string): AsyncIterable<TaskRow> {
  const { feed, tasks, logger } = watch;
  const release = watch.claim(tenantId);
  return new Repeater<TaskRow>(async (push, stop) => {
    const queue = signalQueue(feed, tenantId, () => true);
    queue.stopWith(stop);
    const delivered = new Map<string, number>();
    let since = new Date(watch.clock.now() - RESYNC_MARGIN_MS);
    const offer = async (task: TaskRow) => {
      if (task.version <= (delivered.get(task.id) ?? 0)) return;
      delivered.delete(task.id);
      delivered.set(task.id, task.version);
      if (delivered.size > REMEMBERED_TASKS) delivered.delete(delivered.keys().next().value as string);
      const margin = new Date(task.updatedAt.getTime() - RESYNC_MARGIN_MS);
      if (margin > since) since = margin;
      await push(task);
    };
    try {
      for (;;) {
        const signals = await queue.drain();
        if (signals === null || signals.some((signal) => signal.kind === 'closed')) break;
        try {
          if (signals.some((signal) => signal.kind === 'resync')) {
            for (const task of await tasks.changedSince(tenantId, since)) await offer(task);
          }
          const latest = new Map<string, number>();
          for (const signal of signals) {
            if (signal.kind === 'change') {
              latest.set(signal.change.taskId, Math.max(signal.change.version, latest.get(signal.change.taskId) ?? 0));
            }
          }
          for (const [id, version] of latest) {
            const task = await watch.readAnnounced(tenantId, id, version);
            if (task !== null) await offer(task);
          }
          queue.readSucceeded();
        } catch (error) {
          logger.warn({ err: error, tenantId }, 'watch: tenant read failed; reading again shortly');
          queue.retryLater();
        }
      }
    } finally {
      queue.unsubscribe();
      release();
      stop();
    }
  });
}

export function createWatchService(deps: WatchDeps) {
  const { tasks, logger } = deps;
  const active = new Map<string, number>();
  const sharedReads = new Map<string, Promise<TaskRow | null>>();

  /**
   * One read per task and announced version on this instance, however many subscribers wait for
   * it: a change watched by 1,000 subscribers costs one query, not 1,000. The row read may be newer
   * than the version announced, never older.
   */
  function readAnnounced(tenantId: string, taskId: string, version: number): Promise<TaskRow | null> {
    const key = `${tenantId}:${taskId}:${version}`;
    let read = sharedReads.get(key);
    if (read === undefined) {
      read = tasks.byId(tenantId, taskId);
      sharedReads.set(key, read);
      if (sharedReads.size > SHARED_READS) sharedReads.delete(sharedReads.keys().next().value as string);
      // A failed read is not shared: the next subscriber tries again.
      read.catch(() => sharedReads.delete(key));
    }
    return read;
  }

  /** Counts a tenant's live subscription; the returned function releases it. */
  function claim(tenantId: string): () => void {
    const current = active.get(tenantId) ?? 0;
    if (deps.maxPerTenant && current >= deps.maxPerTenant) {
      throw new SubscriptionLimitError(
        `Too many live subscriptions: this tenant already has ${current} on this gateway instance (limit ${deps.maxPerTenant}).`,
      );
    }
    active.set(tenantId, current + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (active.get(tenantId) ?? 1) - 1;
      if (left <= 0) active.delete(tenantId);
      else active.set(tenantId, left);
    };
  }

  /**
   * Reads a task after `signals`, treating a database outage as "no news yet": the caller reads
   * again after a delay, and the feed's reconnect brings a resync too. Announced changes share
   * their read; a resync reads afresh.
   */
  async function read(tenantId: string, taskId: string, signals: FeedSignal[]): Promise<TaskRow | null | 'unavailable'> {
    const versions = signals.flatMap((signal) => (signal.kind === 'change' ? [signal.change.version] : []));
    const resync = signals.some((signal) => signal.kind === 'resync');
    try {
      return resync || versions.length === 0
        ? await tasks.byId(tenantId, taskId)
        : await readAnnounced(tenantId, taskId, Math.max(...versions));
    } catch (error) {
      logger.warn({ err: error, taskId }, 'watch: task read failed; reading again shortly');
      return 'unavailable';
    }
  }

  const watchers: Watchers = { ...deps, clock: deps.clock ?? systemClock, claim, readAnnounced, read };
  return {
    task: (tenantId: string, taskId: string) => watchTask(watchers, tenantId, taskId),
    tenant: (tenantId: string) => watchTenant(watchers, tenantId),
  };
}

export type WatchService = ReturnType<typeof createWatchService>;
