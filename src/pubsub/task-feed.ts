import type { Database } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import { listenForChanges } from './task-changes.ts';
import type { TaskChange } from './task-changes.ts';

/**
 * What a subscriber hears: a change; "the feed was interrupted, re-read what you watch"; or "the
 * feed is closing" (shutdown), after which nothing more comes.
 */
export type FeedSignal = { kind: 'change'; change: TaskChange } | { kind: 'resync' } | { kind: 'closed' };

export type TaskFeed = {
  /** Signals for one tenant's tasks; call the returned function to stop listening. */
  subscribe(tenantId: string, onSignal: (signal: FeedSignal) => void): () => void;
  /** Subscribers currently attached, for /metrics and tests. */
  size(): number;
  close(): Promise<void>;
};

/**
 * One LISTEN connection per gateway instance, fanned out to its local subscribers by tenant. After
 * a reconnect (the database restarted) every subscriber is told to resync, since notifications sent
 * while the connection was down are lost.
 */
export async function createTaskFeed(database: Database, logger: Logger): Promise<TaskFeed> {
  const byTenant = new Map<string, Set<(signal: FeedSignal) => void>>();
  let listens = 0;
  const deliver = (tenantId: string | null, signal: FeedSignal) => {
    const targets = tenantId === null ? [...byTenant.values()] : [byTenant.get(tenantId) ?? new Set()];
    for (const listeners of targets) {
      for (const listener of [...listeners]) {
        try {
          listener(signal);
        } catch (error) {
          logger.error({ err: error }, 'task feed subscriber failed');
        }
      }
    }
  };
  const unlisten = await listenForChanges(database, {
    onChange: (change) => deliver(change.tenantId, { kind: 'change', change }),
    onMalformed: (payload) => logger.warn({ payload }, 'ignored a malformed task change notification'),
    onListen() {
      listens += 1;
      if (listens > 1) {
        logger.info('task feed reconnected; subscribers resync');
        deliver(null, { kind: 'resync' });
      }
    },
  });
  return {
    subscribe(tenantId, onSignal) {
      let listeners = byTenant.get(tenantId);
      if (listeners === undefined) {
        listeners = new Set();
        byTenant.set(tenantId, listeners);
      }
      listeners.add(onSignal);
      return () => {
        listeners.delete(onSignal);
        if (listeners.size === 0) byTenant.delete(tenantId);
      };
    },
    size() {
      let total = 0;
      for (const listeners of byTenant.values()) total += listeners.size;
      return total;
    },
    async close() {
      deliver(null, { kind: 'closed' });
      byTenant.clear();
      await unlisten();
    },
  };
}
