import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { bearerToken, secretsEqual } from '../auth/api-keys.ts';
import type { Database } from '../db/database.ts';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Route } from './http-server.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, path: string) => Promise<void>;

export type RouteDeps = {
  database: Pick<Database, 'isReady'>;
  metrics: Metrics;
  /** METRICS_TOKEN: when set, the bearer /metrics requires. */
  metricsToken: string | null;
  logger: Logger;
  draining(): boolean;
  /** Null when ROLE=worker: only the health routes are served. */
  api: {
    /** Yoga's Node request listener, for HTTP and SSE. */
    graphql(req: IncomingMessage, res: ServerResponse, context: { requestId: string }): void;
    upgradeGraphql(req: IncomingMessage, socket: Duplex, head: Buffer): void;
    maxRequestBytes: number;
    usageExport: { path: string; handle: Handler };
    /** Null unless videos are stored locally. */
    videoFiles: { match(path: string): boolean; handle: Handler } | null;
    webhooks: { match(path: string): boolean; handle: Handler };
  } | null;
};

function healthRoutes(deps: RouteDeps): Route[] {
  return [
    { label: '/healthz', match: (path) => path === '/healthz', handle: (_req, res) => sendJson(res, 200, { status: 'ok' }) },
    {
      label: '/readyz',
      match: (path) => path === '/readyz',
      async handle(_req, res) {
        if (deps.draining()) return sendJson(res, 503, { status: 'draining' });
        const ready = await deps.database.isReady().catch(() => false);
        sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'database unavailable' });
      },
    },
    {
      label: '/metrics',
      match: (path) => path === '/metrics',
      async handle(req, res) {
        const token = deps.metricsToken;
        if (token !== null && !secretsEqual(bearerToken(req.headers.authorization) ?? '', token)) {
          return sendJson(res, 401, { error: 'send the metrics token: Authorization: Bearer <METRICS_TOKEN>' }, { 'www-authenticate': 'Bearer' });
        }
        let text: string;
        try {
          text = await deps.metrics.registry.metrics();
        } catch (error) {
          deps.logger.warn({ err: error }, 'metrics collection failed');
          return sendJson(res, 503, { error: 'metrics unavailable' });
        }
        res.writeHead(200, { 'content-type': deps.metrics.registry.contentType });
        res.end(text);
      },
    },
  ];
}

/** /graphql over HTTP, with the body limit enforced on the declared length before yoga reads it. */
function graphqlRoute(api: NonNullable<RouteDeps['api']>): Route {
  return {
    label: '/graphql',
    match: (path) => path === '/graphql',
    handle(req, res, { requestId }) {
      // Node's parser never reads past the declared length and yoga reads the body itself, so a
      // body without a declared length (chunked) is refused rather than counted.
      const declared = req.headers['content-length'];
      if (declared === undefined && req.headers['transfer-encoding'] !== undefined) {
        return sendJson(res, 411, { error: 'send the request body with a Content-Length' }, { connection: 'close' });
      }
      if (Number(declared) > api.maxRequestBytes) {
        return sendJson(res, 413, { error: `request body over ${api.maxRequestBytes} bytes` }, { connection: 'close' });
      }
      api.graphql(req, res, { requestId });
    },
    upgrade: api.upgradeGraphql,
  };
}

/** The route table: order matters only in that the first match wins. */
export function createRoutes(deps: RouteDeps): Route[] {
  const routes = healthRoutes(deps);
  const api = deps.api;
  if (api === null) {
    routes.push({
      label: 'other',
      match: () => true,
      handle: (_req, res) => sendJson(res, 404, { error: 'not found (ROLE=worker serves /healthz, /readyz, /metrics)' }),
    });
    return routes;
  }
  routes.push(graphqlRoute(api), {
    label: api.usageExport.path,
    match: (path) => path === api.usageExport.path,
    handle: (req, res, { path }) => api.usageExport.handle(req, res, path),
  });
  if (api.videoFiles !== null) {
    const files = api.videoFiles;
    routes.push({ label: '/files/videos/:key', match: files.match, handle: (req, res, { path }) => files.handle(req, res, path) });
  }
  routes.push({
    label: '/webhooks/kling/:taskId/:token',
    match: api.webhooks.match,
    handle: (req, res, { path }) => api.webhooks.handle(req, res, path),
  });
  return routes;
}
