import type { CombinedError } from '@urql/core';
import { onEnd, pipe, subscribe } from 'wonka';
import { KEY_REFUSED_CLOSE_CODE } from './gateway-client.ts';
import type { GatewayClient } from './gateway-client.ts';
import type { TaskDetailFragment } from './gql/graphql';
import { TaskUpdatesDocument } from './operations.ts';

/**
 * - `connecting`: the first subscription is on its way;
 * - `live`: subscribed (over WebSocket: the gateway acknowledged the connection);
 * - `reconnecting`: the connection dropped; the feed resumes from its last cursor;
 * - `refused`: the gateway refused the key; nothing is retried.
 */
export type FeedState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'refused';

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 8_000;

export type LiveFeed = ReturnType<typeof createLiveFeed>;

/**
 * The tenant-wide `omniTaskUpdated` subscription, shared by the whole page, and the newest state
 * of every task it delivered (by `version`: an older copy never replaces a newer one).
 *
 * It keeps the `changeCursor` of the last event it handled. After a dropped connection it
 * subscribes again with `after:` that cursor, and the gateway replays what changed meanwhile,
 * then goes on live. A cursor older than the gateway's change log is `CURSOR_EXPIRED`: the feed
 * asks the page to list its tasks again (`onResync`) and subscribes without a cursor. So does a
 * drop before any event arrived, since there is then no cursor to resume from.
 *
 * Components hold the feed with `retain()`; the subscription runs while anyone holds it. A
 * release is acted on one task later, so React StrictMode's mount → unmount → mount in
 * development keeps the one subscription instead of closing and reopening it.
 */
export function createLiveFeed(gateway: GatewayClient) {
  const tasks = new Map<string, TaskDetailFragment>();
  const changeListeners = new Set<() => void>();
  const taskListeners = new Set<(task: TaskDetailFragment) => void>();
  const resyncListeners = new Set<() => void>();
  const stats = { retains: 0, subscribes: 0, resumes: 0, resyncs: 0 };

  let state: FeedState = 'idle';
  let cursor: string | null = null;
  let holders = 0;
  let stopTimer: ReturnType<typeof setTimeout> | null = null;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let failures = 0;
  /** The running attempt's teardown; null while stopped or waiting to retry. */
  let current: { unsubscribe(): void } | null = null;
  let attempt = 0;

  const changed = () => {
    for (const listener of changeListeners) listener();
  };
  const setState = (next: FeedState) => {
    if (state === next) return;
    state = next;
    changed();
  };

  gateway.onSocket((event) => {
    if (current === null) return;
    if (event.kind === 'connected') setState('live');
    else if (state === 'live') setState('reconnecting');
  });

  function apply(task: TaskDetailFragment): void {
    const known = tasks.get(task.id);
    if (known !== undefined && known.version >= task.version) return;
    tasks.set(task.id, task);
    for (const listener of taskListeners) listener(task);
    changed();
  }

  function resync(): void {
    stats.resyncs += 1;
    for (const listener of resyncListeners) listener();
  }

  function start(): void {
    const mine = ++attempt;
    const variables = cursor === null ? {} : { after: cursor };
    stats.subscribes += 1;
    if (cursor !== null) stats.resumes += 1;
    // With SSE nothing acknowledges a stream before its first event: count it live once sent.
    if (gateway.transport === 'sse') setState('live');
    let settled = false;
    const settle = (error: CombinedError | null) => {
      if (settled || mine !== attempt) return;
      settled = true;
      current = null;
      afterEnd(error);
    };
    const { unsubscribe } = pipe(
      gateway.urql.subscription(TaskUpdatesDocument, variables),
      onEnd(() => settle(null)),
      subscribe((result) => {
        if (mine !== attempt) return;
        if (result.data) {
          const task = result.data.omniTaskUpdated;
          cursor = task.changeCursor;
          failures = 0;
          setState('live');
          apply(task);
        }
        if (result.error) settle(result.error);
      }),
    );
    // A source that ended synchronously has already settled (and maybe started the next attempt).
    if (mine === attempt && !settled) current = { unsubscribe };
  }

  /** The subscription ended: by error, or by the gateway completing it (a shutdown ends every stream). */
  function afterEnd(error: CombinedError | null): void {
    if (holders === 0 && stopTimer === null) return;
    if (error !== null && isRefused(error)) {
      setState('refused');
      return;
    }
    if (error !== null && hasCode(error, 'CURSOR_EXPIRED')) {
      cursor = null;
      resync();
      start();
      return;
    }
    setState('reconnecting');
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures) * (0.75 + Math.random() * 0.25);
    failures += 1;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      // Without a cursor nothing says what changed while away: list again, then go live.
      if (cursor === null) resync();
      start();
    }, delay);
  }

  function stop(): void {
    attempt += 1;
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = null;
    const running = current;
    current = null;
    running?.unsubscribe();
    setState('idle');
  }

  return {
    stats,
    /** Holds the subscription open; returns the release. */
    retain(): () => void {
      stats.retains += 1;
      holders += 1;
      if (stopTimer !== null) {
        clearTimeout(stopTimer);
        stopTimer = null;
      } else if (holders === 1 && state !== 'refused') {
        setState('connecting');
        start();
      }
      let released = false;
      return () => {
        if (released) return;
        released = true;
        holders -= 1;
        if (holders > 0) return;
        stopTimer = setTimeout(() => {
          stopTimer = null;
          stop();
        }, 0);
      };
    },
    state: () => state,
    /** The newest state the feed delivered of this task, if any. */
    task: (id: string) => tasks.get(id),
    /** The last changeCursor handled: where a resume starts. */
    cursor: () => cursor,
    /** For useSyncExternalStore: any change of state or of a task. */
    subscribe(listener: () => void): () => void {
      changeListeners.add(listener);
      return () => changeListeners.delete(listener);
    },
    onTask(listener: (task: TaskDetailFragment) => void): () => void {
      taskListeners.add(listener);
      return () => taskListeners.delete(listener);
    },
    /** The page should list its tasks again: changes may have been missed. */
    onResync(listener: () => void): () => void {
      resyncListeners.add(listener);
      return () => resyncListeners.delete(listener);
    },
  };
}

function hasCode(error: CombinedError, code: string): boolean {
  return error.graphQLErrors.some((e) => e.extensions?.code === code);
}

/** A 401 over HTTP (SSE) is UNAUTHENTICATED; a WebSocket is closed with 4403. */
function isRefused(error: CombinedError): boolean {
  const network = error.networkError as unknown as { code?: unknown } | undefined;
  return hasCode(error, 'UNAUTHENTICATED') || network?.code === KEY_REFUSED_CLOSE_CODE;
}
