import type { Logger } from '../logger.ts';

export type JobLoop = {
  start(): void;
  /** Stops scheduling and waits for the tick in progress, so jobs in hand are finished. */
  stop(): Promise<void>;
  /** Runs a tick now (or once more right after the one in progress): there is new work. */
  wake(): void;
};

/**
 * Runs `tick` again and again: at once while it keeps handling a full batch (there is more work),
 * after `intervalMs` otherwise. A failed tick is logged and the loop goes on.
 */
export function createJobLoop(options: {
  name: string;
  tick: () => Promise<number>;
  batchSize: number;
  intervalMs: number;
  logger: Logger;
}): JobLoop {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<number> | null = null;
  let stopped = true;
  let woken = false;

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = null;
      woken = false;
      running = options
        .tick()
        .catch((error: unknown) => {
          options.logger.warn({ err: error, job: options.name }, 'background tick failed');
          return 0;
        })
        .finally(() => {
          running = null;
        });
      void running.then((handled) => schedule(handled >= options.batchSize || woken ? 0 : options.intervalMs));
    }, delayMs);
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(0);
    },
    wake() {
      if (stopped) return;
      if (running !== null) {
        woken = true;
        return;
      }
      if (timer !== null) clearTimeout(timer);
      timer = null;
      schedule(0);
    },
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await running;
    },
  };
}
