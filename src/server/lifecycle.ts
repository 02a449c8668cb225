import type { Server } from 'node:http';
import type { Logger } from '../logger.ts';

/**
 * The shutdown order: stop accepting, stop the background jobs after the work in hand, end the
 * live streams, let in-flight requests finish (cut after `timeoutMs`), then dispose of the rest.
 */
export async function drain(steps: {
  server: Server;
  timeoutMs: number;
  logger: Logger;
  stopJobs(): Promise<unknown>;
  endStreams(): Promise<unknown>;
  dispose(): Promise<unknown>;
}): Promise<void> {
  const { server } = steps;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  await steps.stopJobs();
  await steps.endStreams();
  server.closeIdleConnections();
  const timeout = new Promise<'timeout'>((resolve) => {
    setTimeout(() => resolve('timeout'), steps.timeoutMs).unref();
  });
  if ((await Promise.race([closed, timeout])) === 'timeout') {
    steps.logger.warn('shutdown timeout: closing remaining connections');
    server.closeAllConnections();
    await closed;
  }
  await steps.dispose();
}
