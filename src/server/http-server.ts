import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics/metrics.ts';

export type Route = {
  /** A bounded label for metrics and logs: never the raw path, which carries ids and tokens. */
  label: string;
  match(path: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, context: { path: string; requestId: string }): void | Promise<void>;
  /** Takes WebSocket upgrades on this route; without it, upgrades are refused. */
  upgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
};

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0] ?? '/';
}

/**
 * The HTTP server: one route table decides dispatch, metric labels and which paths take a
 * WebSocket upgrade. Every response carries an `x-request-id` (the caller's, if well-formed).
 */
export function createHttpServer(deps: {
  routes: readonly Route[];
  logger: Logger;
  metrics: Metrics;
  /** True while draining: upgrades are refused. */
  draining(): boolean;
  /** How long a client may take to send a whole request: a slow body cannot hold its share of the body budget for long. */
  requestTimeoutMs: number;
}): Server {
  const { routes, logger, metrics } = deps;
  const routeFor = (path: string) => routes.find((route) => route.match(path));

  const server = createServer((req, res) => {
    const started = performance.now();
    const path = pathOf(req);
    const route = routeFor(path);
    const label = route?.label ?? 'other';
    const given = req.headers['x-request-id'];
    const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    res.setHeader('x-request-id', requestId);
    res.once('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      metrics.http(label, req.method ?? 'GET', res.statusCode, seconds);
      logger.debug({ requestId, method: req.method, route: label, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });
    if (route === undefined) return sendJson(res, 404, { error: 'not found' });
    const failed = (error: unknown) => {
      logger.error({ err: error, route: label }, 'request handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    };
    try {
      void Promise.resolve(route.handle(req, res, { path, requestId })).catch(failed);
    } catch (error) {
      failed(error);
    }
  });

  server.requestTimeout = deps.requestTimeoutMs;
  server.headersTimeout = Math.min(deps.requestTimeoutMs, 60_000);

  server.on('upgrade', (req, socket, head) => {
    const route = routeFor(pathOf(req));
    if (route?.upgrade === undefined || deps.draining()) {
      socket.destroy();
      return;
    }
    route.upgrade(req, socket, head);
  });
  return server;
}
