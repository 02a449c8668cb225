import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { sendJson } from '../http/respond.ts';
import { klingError } from './bodies.ts';
import { createControlHandler, parseFinish } from './control.ts';
import type { SimulatorFault } from './faults.ts';
import { CREATE_PATH, createKlingApi } from './kling-api.ts';
import { createResultHandler } from './results.ts';
import { createSimulatorState } from './state.ts';
import type { SimulatorStats } from './state.ts';
import { MAX_VIDEO_BYTES, MIN_VIDEO_BYTES } from './video-bytes.ts';
import { listen as listenOn } from '../http/listen.ts';

/*
 * An in-process stand-in for CometAPI's Kling Omni endpoints that speaks the same HTTP contract
 * (reference §1–§3 and §5), so the real client code runs in tests, benchmarks and keyless dev.
 *
 * Task failure is steered by the prompt: a prompt containing `[[fail]]` or `[[fail:reason]]`
 * ends `failed` with that reason as task_status_msg. A marker in the prompt works across
 * processes and needs no shared state with the test that wants it.
 */

export type Simulator = {
  handle: (req: IncomingMessage, res: ServerResponse) => void;
  listen(port: number, host?: string): Promise<{ url: string }>;
  close(): Promise<void>;
  /** Queue of one-shot faults; push to inject. */
  faults: SimulatorFault[];
  /**
   * `callbacks: false` drops callbacks (counted in stats.callbacksDropped) while it is off, and
   * for good for tasks created meanwhile, so a test can lose a task's callbacks entirely.
   */
  settings: { callbacks: boolean; concurrencyLimit: number | null };
  readonly stats: SimulatorStats;
  reset(): void;
  /**
   * Ends a task now (as `POST /__control/finish` does), described like a Kling callback: its
   * status, reason, videos and units, or those it would have had. False if it is unknown or final.
   */
  finish(body: unknown): boolean;
};

type SimulatorOptions = {
  apiKey?: string;
  /** Milliseconds after creation at which a task turns processing, and reaches its final state. */
  delays?: { processingMs: number; finishMs: number };
  /**
   * Size of generated result bytes (an MP4 header, then bytes derived from the task id), for
   * tests that need large or exact downloads. Unset: the real, playable MP4 of the task's aspect
   * ratio and duration.
   */
  videoBytes?: number;
  publicBaseUrl?: string;
  /** Tasks in flight per account (API key) beyond which a create is refused with 1303, as Kling does; unset: no limit. */
  concurrencyLimit?: number;
};

function checkedVideoBytes(videoBytes: number): number {
  if (!Number.isInteger(videoBytes) || videoBytes < MIN_VIDEO_BYTES || videoBytes > MAX_VIDEO_BYTES) {
    throw new RangeError(`videoBytes must be an integer from ${MIN_VIDEO_BYTES} to ${MAX_VIDEO_BYTES}`);
  }
  return videoBytes;
}

export function createSimulator(options: SimulatorOptions = {}): Simulator {
  const delays = options.delays ?? { processingMs: 1500, finishMs: 4000 };
  const videoBytes = options.videoBytes === undefined ? null : checkedVideoBytes(options.videoBytes);
  const state = createSimulatorState(delays, options.concurrencyLimit ?? null);
  const openResponses = new Set<ServerResponse>();
  let server: Server | null = null;
  let listenUrl: string | null = null;

  function baseUrlFor(req: IncomingMessage): string {
    const base = options.publicBaseUrl ?? listenUrl ?? `http://${req.headers.host ?? '127.0.0.1'}`;
    return base.replace(/\/+$/, '');
  }

  const kling = createKlingApi({ state, apiKey: options.apiKey, baseUrlFor });
  const serveResult = createResultHandler(state, videoBytes);
  const control = createControlHandler(state);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { pathname } = new URL(req.url ?? '/', 'http://simulator');
    const method = req.method ?? 'GET';
    if (pathname === CREATE_PATH && method === 'POST') return kling.create(req, res);
    if (pathname.startsWith(`${CREATE_PATH}/`) && method === 'GET') {
      return kling.get(req, res, decodeURIComponent(pathname.slice(CREATE_PATH.length + 1)));
    }
    const result = /^\/results\/([^/]+)\.mp4$/.exec(pathname);
    if (result?.[1] && (method === 'GET' || method === 'HEAD')) return serveResult(req, res, decodeURIComponent(result[1]));
    const action = /^\/__control\/([a-z]+)$/.exec(pathname);
    if (action?.[1]) return control(req, res, action[1]);
    sendJson(res, 404, klingError(1202, `no route for ${method} ${pathname}`));
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    if (state.closed) {
      res.socket?.destroy();
      return;
    }
    openResponses.add(res);
    res.on('close', () => openResponses.delete(res));
    route(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, klingError(5000, `simulator error: ${String(error)}`));
      else res.destroy();
    });
  }

  async function listen(port: number, host = '127.0.0.1'): Promise<{ url: string }> {
    if (server) throw new Error('simulator is already listening');
    server = createServer(handle);
    listenUrl = await listenOn(server, port, host);
    return { url: listenUrl };
  }

  async function close(): Promise<void> {
    if (state.closed) return;
    state.close();
    for (const res of openResponses) res.destroy();
    openResponses.clear();
    const s = server;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  return {
    handle,
    listen,
    close,
    faults: state.faults,
    settings: state.settings,
    get stats() {
      return structuredClone(state.stats);
    },
    reset: state.reset,
    finish(body) {
      const { taskId, outcome } = parseFinish(body);
      return state.finish(taskId, outcome);
    },
  };
}
