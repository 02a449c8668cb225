import type { Db } from '../db/database.ts';
import { createJobLoop } from '../jobs/loop.ts';
import type { Logger } from '../logger.ts';
import { createWebhookSender, pruneDeliveries } from './deliver.ts';
import type { DeliverySettings } from './deliver.ts';
import { createWebhookDispatcher } from './dispatch.ts';
import type { TaskSerializer } from './dispatch.ts';

const DISPATCH_BATCH = 500;
const DISPATCH_GAP_MS = 50;
const SEND_BATCH = 32;
/** Attempts in the air at once per instance. */
const MAX_IN_FLIGHT = 128;
const PRUNE_BATCH = 5_000;

export type OutboundWebhooks = {
  start(): void;
  /** Stops the loops and waits for the attempts in hand. */
  stop(): Promise<void>;
  /** New changes in the log: turn them into deliveries now. */
  wakeDispatch(): void;
  /** New deliveries queued (a redelivery, a test): send now. */
  wakeSend(): void;
};

/**
 * `run` at most once per `gapMs`, however often called. Changes come in bursts: one dispatch per gap
 * takes a whole burst in one read, instead of a transaction per commit competing with the commits
 * themselves (PGlite has one connection).
 */
function throttled(run: () => void, gapMs: number): (() => void) & { cancel(): void } {
  let last = 0;
  let pending: NodeJS.Timeout | null = null;
  const call = () => {
    if (pending !== null) return;
    pending = setTimeout(
      () => {
        pending = null;
        last = performance.now();
        run();
      },
      Math.max(0, gapMs - (performance.now() - last)),
    );
    pending.unref();
  };
  return Object.assign(call, {
    cancel() {
      if (pending !== null) clearTimeout(pending);
      pending = null;
    },
  });
}

/**
 * The outbound webhook jobs of a worker: the dispatcher (change log → deliveries), the sender
 * (leased attempts on the retry schedule) and the pruning of old deliveries. Each loop also runs on
 * its interval, so an instance that misses a wake-up, or restarts, picks up what is due.
 */
export function createOutboundWebhooks(deps: {
  db: Db;
  logger: Logger;
  serializeTask: TaskSerializer;
  settings: DeliverySettings;
  retentionSeconds: number;
  intervalMs: number;
}): OutboundWebhooks {
  const { db, logger } = deps;
  const dispatch = createWebhookDispatcher({
    db,
    serializeTask: deps.serializeTask,
    batchSize: DISPATCH_BATCH,
    firstDelaySeconds: deps.settings.retryScheduleSeconds[0] ?? 0,
  });
  const attempts = createWebhookSender({
    db,
    logger,
    settings: deps.settings,
    batchSize: SEND_BATCH,
    maxInFlight: MAX_IN_FLIGHT,
    onSettled: () => sender.wake(),
    // The instance that made an attempt wakes itself for the retry; the others find it by polling.
    onRetry: (delaySeconds) => {
      if (delaySeconds * 1000 >= deps.intervalMs) return;
      const timer = setTimeout(() => sender.wake(), Math.ceil(delaySeconds * 1000) + 5);
      timer.unref();
    },
  });
  const sender = createJobLoop({
    name: 'webhook-send',
    tick: attempts.tick,
    batchSize: SEND_BATCH,
    intervalMs: deps.intervalMs,
    logger,
  });
  const dispatcher = createJobLoop({
    name: 'webhook-dispatch',
    tick: async () => {
      const { changes, queued } = await dispatch();
      if (queued > 0) sender.wake();
      return changes;
    },
    batchSize: DISPATCH_BATCH,
    intervalMs: deps.intervalMs,
    logger,
  });
  const pruner = createJobLoop({
    name: 'webhook-prune',
    tick: () => pruneDeliveries(db, deps.retentionSeconds, PRUNE_BATCH),
    batchSize: PRUNE_BATCH,
    intervalMs: 60_000,
    logger,
  });
  const wakeDispatch = throttled(() => dispatcher.wake(), DISPATCH_GAP_MS);
  return {
    start() {
      dispatcher.start();
      sender.start();
      pruner.start();
    },
    async stop() {
      wakeDispatch.cancel();
      await Promise.all([dispatcher.stop(), sender.stop(), pruner.stop()]);
      await attempts.drain();
    },
    wakeDispatch,
    wakeSend: sender.wake,
  };
}
