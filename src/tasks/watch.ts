import { AppError, NotFoundError, SubscriptionLimitError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { comparePositions } from '../pubsub/change-log.ts';
import type { ChangeLog, ChangePosition, CursorCodec, LoggedChange } from '../pubsub/change-log.ts';
import type { TaskReads } from './reads.ts';
import { taskFromSnapshot } from './snapshot.ts';
import { isFinal } from './state.ts';
import type { TaskRow } from './state.ts';

/** Changes a subscriber may have waiting before it is dropped as too slow (it can resume with its cursor). */
const MAX_QUEUED = 10_000;

/** A change-log entry with its task, parsed once for all the subscribers it reaches. */
type Delivery = { position: ChangePosition; task: TaskRow };

/**
 * A pull stream with its own cleanup, run exactly once on every way it can end: completed,
 * failed, or returned by the consumer, even before the first value was asked for (graphql-ws and
 * yoga call `return()` when a client cancels, however early).
 */
function createStream<T>(cleanup: () => void, signal: AbortSignal | null) {
  const queue: T[] = [];
  let waiter: { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void } | null = null;
  let ended = false;
  let failure: unknown = null;
  let cleaned = false;
  const finish = () => {
    if (cleaned) return;
    cleaned = true;
    cleanup();
  };
  const stop = (): Promise<IteratorResult<T>> => {
    ended = true;
    queue.length = 0;
    finish();
    waiter?.resolve({ value: undefined, done: true });
    waiter = null;
    return Promise.resolve({ value: undefined, done: true });
  };
  const iterator: AsyncIterableIterator<T> = {
    next() {
      if (queue.length > 0) return Promise.resolve({ value: queue.shift() as T, done: false });
      if (ended) {
        const error = failure;
        failure = null;
        return error === null ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
      }
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    return: stop,
    throw: stop,
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  const stream = {
    iterator,
    push(value: T): void {
      if (ended) return;
      if (waiter !== null) {
        waiter.resolve({ value, done: false });
        waiter = null;
      } else if (queue.length >= MAX_QUEUED) {
        stream.end(
          new AppError(
            'This subscription fell too far behind and was ended; resubscribe with your last changeCursor.',
            'SUBSCRIPTION_OVERFLOW',
          ),
        );
      } else queue.push(value);
    },
    /** Ends the stream once what is queued has been read; with an error, that error comes last. */
    end(error: unknown = null): void {
      if (ended) return;
      ended = true;
      failure = error;
      finish();
      if (waiter !== null && queue.length === 0) {
        const w = waiter;
        waiter = null;
        failure = null;
        if (error === null) w.resolve({ value: undefined, done: true });
        else w.reject(error);
      }
    },
  };
  // The exchange that asked for the stream is over (client gone, or its answer was not a stream at all).
  signal?.addEventListener('abort', () => stream.end(), { once: true });
  return stream;
}

/** A stream with nothing in it: for an exchange that was over before its subscription began. */
async function* ended(): AsyncGenerator<TaskRow> {}

type Subscriber = { taskId: string | null; offer(delivery: Delivery): void; end(): void };

type WatchDeps = {
  log: Pick<ChangeLog, 'listen' | 'head' | 'replay' | 'isExpired'>;
  tasks: Pick<TaskReads, 'byId'>;
  cursors: CursorCodec;
  logger: Logger;
  /** Live subscriptions a tenant may hold on this instance; 0 = no cap. */
  maxPerTenant?: number;
};

/**
 * Live updates from the change log: this instance's one tail of the log, fanned out to its
 * subscribers by tenant (and task). Every subscriber sees every change of what it watches, in log
 * order, each version once, with the task as that change left it; it remembers nothing but its
 * queue, and leaves nothing behind however it ends.
 */
export function createWatchService(deps: WatchDeps) {
  const byTenant = new Map<string, Set<Subscriber>>();
  let live = 0;

  deps.log.listen((changes: LoggedChange[]) => {
    for (const change of changes) {
      const subscribers = byTenant.get(change.tenantId);
      if (subscribers === undefined) continue;
      let delivery: Delivery | null = null;
      for (const subscriber of subscribers) {
        if (subscriber.taskId !== null && subscriber.taskId !== change.taskId) continue;
        delivery ??= { position: change.position, task: taskFromSnapshot(change.task, change.position) };
        subscriber.offer(delivery);
      }
    }
  });

  /** Counts a tenant's live subscription and attaches it; the returned function undoes both. */
  function attach(tenantId: string, subscriber: Subscriber): () => void {
    const subscribers = byTenant.get(tenantId) ?? new Set<Subscriber>();
    if (deps.maxPerTenant && subscribers.size >= deps.maxPerTenant) {
      throw new SubscriptionLimitError(
        `Too many live subscriptions: this tenant already has ${subscribers.size} on this gateway instance (limit ${deps.maxPerTenant}).`,
      );
    }
    subscribers.add(subscriber);
    byTenant.set(tenantId, subscribers);
    live += 1;
    let detached = false;
    return () => {
      if (detached) return;
      detached = true;
      live -= 1;
      subscribers.delete(subscriber);
      if (subscribers.size === 0) byTenant.delete(tenantId);
    };
  }

  return {
    task: (tenantId: string, taskId: string, signal: AbortSignal | null = null) => watchTask(deps, attach, tenantId, taskId, signal),
    tenant: (tenantId: string, after: ChangePosition | null, signal: AbortSignal | null = null) =>
      watchTenant(deps, attach, tenantId, after, signal),
    /** Live subscriptions on this instance, for /metrics and tests. */
    size: () => live,
    /** The opaque cursor of a task's latest change: `OmniTask.changeCursor`, and `after` to resume from. */
    cursorOf: (task: TaskRow): string => deps.cursors.encode({ txid: task.changeTxid, seq: task.changeSeq }),
    /** A cursor a client gave back; BAD_USER_INPUT when it is not one the gateway gave out. */
    parseCursor(cursor: string): ChangePosition {
      const position = deps.cursors.decode(cursor);
      if (position === null) throw new AppError('This is not a changeCursor the gateway gave out.', 'BAD_USER_INPUT');
      return position;
    },
    /** Ends every subscription (shutdown): streams complete after what they have queued. */
    close(): void {
      for (const subscribers of [...byTenant.values()]) for (const subscriber of [...subscribers]) subscriber.end();
    },
  };
}

type Attach = (tenantId: string, subscriber: Subscriber) => () => void;

/**
 * The task's current state at once, then each change, ending after a final state. Attached before
 * the read, so that a change between the read and the first live batch is not lost; changes
 * at or before the state read are skipped. Throws NotFoundError for an id that is not the tenant's.
 */
async function watchTask(
  deps: WatchDeps,
  attach: Attach,
  tenantId: string,
  taskId: string,
  signal: AbortSignal | null,
): Promise<AsyncIterable<TaskRow>> {
  if (signal?.aborted) return ended();
  let floor: ChangePosition | null = null;
  const early: Delivery[] = [];
  const stream = createStream<TaskRow>(() => detach(), signal);
  const offer = (delivery: Delivery) => {
    if (floor === null) return void early.push(delivery);
    if (comparePositions(delivery.position, floor) <= 0) return;
    floor = delivery.position;
    stream.push(delivery.task);
    if (isFinal(delivery.task.status)) stream.end();
  };
  const detach = attach(tenantId, { taskId, offer, end: () => stream.end() });
  let current: TaskRow | null;
  try {
    current = await deps.tasks.byId(tenantId, taskId);
  } catch (error) {
    detach();
    throw error;
  }
  if (current === null) {
    detach();
    throw new NotFoundError('No task has this id.');
  }
  floor = { txid: current.changeTxid, seq: current.changeSeq };
  stream.push(current);
  if (isFinal(current.status)) stream.end();
  for (const delivery of early.splice(0)) offer(delivery);
  return stream.iterator;
}

/**
 * Every change of every task of the tenant. With `after`, first the latest state of each task
 * changed since that position (from the log, up to the live tail's head when attached), then the
 * live changes after that head: no gap and no repeat at the seam.
 */
async function watchTenant(
  deps: WatchDeps,
  attach: Attach,
  tenantId: string,
  after: ChangePosition | null,
  signal: AbortSignal | null,
): Promise<AsyncIterable<TaskRow>> {
  if (after !== null && (await deps.log.isExpired(after))) {
    throw new AppError(
      'This changeCursor is older than the change log keeps: list the tasks again, then subscribe without it.',
      'CURSOR_EXPIRED',
    );
  }
  if (signal?.aborted) return ended();
  let replaying = after !== null;
  const held: Delivery[] = [];
  const stream = createStream<TaskRow>(() => detach(), signal);
  const offer = (delivery: Delivery) => (replaying ? held.push(delivery) : stream.push(delivery.task));
  const detach = attach(tenantId, { taskId: null, offer, end: () => stream.end() });
  if (after === null) return stream.iterator;
  // A client may hold a position this instance's tail has not reached yet (it resumed elsewhere,
  // or here, a moment ago): nothing at or before its cursor is sent again.
  const head = deps.log.head();
  const seam = comparePositions(after, head) > 0 ? after : head;
  try {
    for (const change of await deps.log.replay(tenantId, after, seam)) stream.push(taskFromSnapshot(change.task, change.position));
  } catch (error) {
    detach();
    throw error;
  }
  replaying = false;
  for (const delivery of held.splice(0)) if (comparePositions(delivery.position, seam) > 0) stream.push(delivery.task);
  return stream.iterator;
}

export type WatchService = ReturnType<typeof createWatchService>;
