import { createJobLoop } from '../jobs/loop.ts';
import type { Logger } from '../logger.ts';
import type { LoggedChange } from '../pubsub/change-log.ts';
import type { TaskCommands } from './commands.ts';

/** The change log as the dispatcher reads it: every instance's changes, in batches. */
type Changes = { listen(listener: (changes: LoggedChange[]) => void): () => void };

const FINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
/** Waiting tasks cancelled per tick at their cancelAfterSeconds. */
const CANCEL_BATCH = 100;

/**
 * A change that may let a waiting task go: a slot freed (a final state), on any instance. A new
 * task needs no wake-up: its create runs a pass itself, and waits only if no slot is free for it.
 */
function mayDispatch(change: LoggedChange): boolean {
  const status = change.task.status;
  return typeof status === 'string' && FINAL.has(status);
}

export type Dispatcher = {
  start(): void;
  /** Stops the loop and waits for the pass and the creates in hand. */
  stop(): Promise<void>;
  /** Runs a pass now, or once more after the pass in progress. */
  wake(): void;
};

/**
 * Sends waiting tasks upstream as slots free: at once when the change log shows a task of any
 * instance finishing (or queued), and on a periodic tick (also the moment tasks past their
 * cancelAfterSeconds are cancelled, and the retry after a pause for upstream load). Passes of one
 * instance never overlap; those of several instances are ordered by the budget row's lock.
 */
export function createDispatcher(options: {
  tasks: Pick<TaskCommands, 'dispatch' | 'cancelExpired' | 'drainDispatches'>;
  changes: Changes;
  intervalMs: number;
  logger: Logger;
}): Dispatcher {
  const { tasks, logger } = options;
  let running: Promise<void> | null = null;
  let again = false;
  let stopped = true;
  let unlisten: (() => void) | null = null;

  function wake(): void {
    if (stopped) return;
    if (running !== null) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        await tasks.dispatch();
      } while (again && !stopped);
    })()
      .catch((error: unknown) => logger.warn({ err: error }, 'dispatch pass failed; the next tick tries again'))
      .finally(() => {
        running = null;
      });
  }

  const loop = createJobLoop({
    name: 'dispatcher',
    tick: async () => {
      const cancelled = await tasks.cancelExpired(CANCEL_BATCH);
      wake();
      await running;
      return cancelled;
    },
    batchSize: CANCEL_BATCH,
    intervalMs: options.intervalMs,
    logger,
  });

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      unlisten = options.changes.listen((changes) => {
        if (changes.some(mayDispatch)) wake();
      });
      loop.start();
    },
    async stop() {
      stopped = true;
      unlisten?.();
      await loop.stop();
      await running;
      await tasks.drainDispatches();
    },
    wake,
  };
}

/**
 * How long tasks run upstream lately (submitted → final), from the change log: an exponentially
 * weighted mean, for the estimated start of a task that would wait. Null until one has finished.
 */
export function watchRunTimes(changes: Changes) {
  let mean: number | null = null;
  const unlisten = changes.listen((batch) => {
    for (const change of batch) {
      const { status, submitted_at: submitted, completed_at: completed } = change.task;
      if (status !== 'SUCCEEDED' || typeof submitted !== 'string' || typeof completed !== 'string') continue;
      const seconds = (Date.parse(completed) - Date.parse(submitted)) / 1000;
      if (!Number.isFinite(seconds) || seconds < 0) continue;
      mean = mean === null ? seconds : mean * 0.9 + seconds * 0.1;
    }
  });
  return { meanSeconds: () => mean, close: unlisten };
}
