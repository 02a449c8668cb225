import autocannon from 'autocannon';
import type { AutocannonOptions, AutocannonRequest } from 'autocannon';
import { percentiles } from './stats.ts';
import type { Percentiles } from './stats.ts';

export type HttpLoad = {
  url: string;
  /** POST unless said otherwise (a GET sends no body). */
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  /** A fixed JSON body, or a function producing a fresh one per request. */
  body: string | (() => string);
  /** Per request: the path (and a body to go with it), instead of the URL's path and `body`. */
  next?: () => { path: string; body: string };
  connections: number;
  warmupSeconds: number;
  seconds: number;
  /** A response body that fails this counts as a mismatch (e.g. a GraphQL error with status 200). */
  expect: (body: string) => boolean;
};

export type LoadResult = {
  requestsPerSecond: number;
  latencyMs: Percentiles;
  responses: number;
  errors: number;
  non2xx: number;
  mismatches: number;
  /** The first failing body, so a broken figure explains itself. */
  firstMismatch: string | null;
  seconds: number;
  connections: number;
};

let current: { stop(): void } | null = null;

/** Stops the load run in progress, if any (the runner calls this on Ctrl-C). */
export function stopLoad(): void {
  current?.stop();
}

function runOnce(load: HttpLoad, seconds: number, amount?: number): Promise<LoadResult> {
  const headers = { 'content-type': 'application/json', accept: 'application/json', ...load.headers };
  const fresh = load.body;
  const next = load.next;
  const method = load.method ?? 'POST';
  const request: AutocannonRequest =
    next !== undefined
      ? { method, headers, setupRequest: (req) => ({ ...req, ...next() }) }
      : method === 'GET'
        ? { method, headers: load.headers ?? {} }
        : typeof fresh === 'string'
          ? { method, headers, body: fresh }
          : { method, headers, setupRequest: (req) => ({ ...req, body: fresh() }) };
  const options: AutocannonOptions = {
    url: load.url,
    method,
    headers: method === 'GET' ? (load.headers ?? {}) : headers,
    connections: load.connections,
    ...(amount === undefined ? { duration: seconds } : { amount }),
    timeout: 30,
    requests: [request],
    verifyBody: load.expect,
  };
  // Response times come from autocannon's own per-request clock (ms, sub-ms resolution); its
  // histogram rounds to whole milliseconds, too coarse for a local hello-world.
  const latencies: number[] = [];
  let ok = 0;
  let firstMismatch: string | null = null;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const instance = autocannon(options, (error, result) => {
      current = null;
      if (error) return reject(error);
      const elapsed = (performance.now() - started) / 1000;
      resolve({
        requestsPerSecond: ok / elapsed,
        latencyMs: percentiles(latencies),
        responses: latencies.length,
        errors: result.errors,
        non2xx: result.non2xx,
        mismatches: result.mismatches,
        firstMismatch,
        seconds: elapsed,
        connections: load.connections,
      });
    });
    current = instance;
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      latencies.push(responseTime);
      if (statusCode >= 200 && statusCode < 300) ok += 1;
    });
    instance.on('reqMismatch', (body: string) => {
      firstMismatch ??= body.slice(0, 500);
    });
  });
}

/** A warm-up run (discarded), then the measured run. */
export async function measureHttp(load: HttpLoad): Promise<LoadResult> {
  if (load.warmupSeconds > 0) await runOnce(load, load.warmupSeconds);
  return runOnce(load, load.seconds);
}

/** Exactly `warmup` requests (discarded), then exactly `requests` measured ones. */
export async function measureRequests(load: HttpLoad, warmup: number, requests: number): Promise<LoadResult> {
  if (warmup > 0) await runOnce(load, 0, warmup);
  return runOnce(load, 0, requests);
}

/** Why a load result cannot be trusted, or null. */
export function loadProblem(result: LoadResult): string | null {
  if (result.responses === 0) return 'no responses';
  const bad = result.errors + result.non2xx + result.mismatches;
  if (bad === 0) return null;
  return `${result.errors} errors, ${result.non2xx} non-2xx, ${result.mismatches} bad bodies${result.firstMismatch ? `; e.g. ${result.firstMismatch}` : ''}`;
}
