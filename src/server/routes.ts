import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { secretsEqual } from '../auth/api-keys.ts';
import { bearerToken } from '../http/bearer.ts';
import type { Authenticate } from '../auth/authenticate.ts';
import type { KeySessions } from '../auth/key-sessions.ts';
import type { Database } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { createGraphiQLAssetHandler, GRAPHIQL_ASSETS_PATH } from '../graphql/graphiql.ts';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Viewer } from '../tenants/tenants.ts';
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
    /** Yoga's Node request listener, for HTTP and SSE; `viewer` is set once the key was checked. */
    graphql(req: IncomingMessage, res: ServerResponse, context: { requestId: string; viewer?: Viewer; signal?: AbortSignal }): void;
    upgradeGraphql(req: IncomingMessage, socket: Duplex, head: Buffer): void;
    authenticate: Authenticate;
    admitRequest(viewer: Viewer): void;
    /** A response (an SSE stream above all) lives only as long as its key: revoking the key ends it. */
    sessions: Pick<KeySessions, 'open'>;
    maxRequestBytes: number;
    maxInflightBodyBytes: number;
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
          return sendJson(
            res,
            401,
            { error: 'send the metrics token: Authorization: Bearer <METRICS_TOKEN>' },
            { 'www-authenticate': 'Bearer' },
          );
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

/** An AppError as graphql-over-http answers it: its HTTP status and headers, a GraphQL error body. */
function sendGraphQLError(req: IncomingMessage, res: ServerResponse, error: AppError, extraHeaders: Record<string, string> = {}): void {
  const { http, ...extensions } = error.extensions as { http?: { status?: number; headers?: Record<string, string> } };
  const accept = req.headers.accept ?? '';
  const type = accept.includes('application/graphql-response+json') ? 'application/graphql-response+json' : 'application/json';
  const text = JSON.stringify({ errors: [{ message: error.message, extensions }] });
  res.writeHead(http?.status ?? 400, {
    'content-type': `${type}; charset=utf-8`,
    'content-length': Buffer.byteLength(text),
    ...http?.headers,
    ...extraHeaders,
  });
  res.end(text);
}

/** Whether the request still has body bytes the server has not read. */
function hasBody(req: IncomingMessage): boolean {
  return Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
}

/** Bodies this small are never held back: they cannot exhaust memory, and every client sends them. */
const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Bytes of large /graphql bodies being read at once on this instance: authenticated callers may
 * send large bodies (inline images), and together they must not exhaust memory. One tenant holds
 * at most one large body's worth at a time, so it cannot take the whole budget from the others;
 * the server's request timeout bounds how long a slow body holds its share.
 */
function createBodyBudget(maxBytes: number, perTenantBytes: number) {
  let inFlight = 0;
  const byTenant = new Map<string, number>();
  return {
    /** Reserves the declared length until the request ends; false when over budget. */
    admit(req: IncomingMessage, bytes: number, tenant: string): boolean {
      if (bytes <= SMALL_BODY_BYTES) return true;
      const held = byTenant.get(tenant) ?? 0;
      if (inFlight + bytes > maxBytes || held + bytes > perTenantBytes) return false;
      inFlight += bytes;
      byTenant.set(tenant, held + bytes);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        inFlight -= bytes;
        const left = (byTenant.get(tenant) ?? bytes) - bytes;
        if (left <= 0) byTenant.delete(tenant);
        else byTenant.set(tenant, left);
      };
      req.once('end', release);
      req.once('close', release);
      return true;
    },
  };
}

/**
 * The GraphiQL page loads nothing from another host, and the browser holds it to that. Its inline
 * scripts carry the page's options; Monaco's editors inject styles.
 */
const GRAPHIQL_CSP = [
  "default-src 'self'",
  "script-src 'self' 'unsafe-inline'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "worker-src 'self'",
  "connect-src 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * /graphql over HTTP. The key is checked from the headers before a byte of the body is read: a
 * caller without a valid key is answered at once and its connection closed, so an anonymous
 * client can make the gateway neither buffer nor parse anything. Bodies must declare their length
 * (Node never reads past it), within the per-request limit and the instance's body budget.
 */
function graphqlRoute(api: NonNullable<RouteDeps['api']>): Route {
  const budget = createBodyBudget(api.maxInflightBodyBytes, api.maxRequestBytes);
  return {
    label: '/graphql',
    match: (path) => path === '/graphql',
    async handle(req, res, { requestId }) {
      const close: Record<string, string> = hasBody(req) ? { connection: 'close' } : {};
      const declared = req.headers['content-length'];
      if (declared === undefined && req.headers['transfer-encoding'] !== undefined) {
        return sendJson(res, 411, { error: 'send the request body with a Content-Length' }, { connection: 'close' });
      }
      const browserPage =
        req.method === 'GET' && req.headers.authorization === undefined && (req.headers.accept ?? '').includes('text/html');
      // A CORS preflight and the GraphiQL page run no operation and need no key.
      if (req.method === 'OPTIONS' || browserPage) {
        if (hasBody(req)) return sendJson(res, 400, { error: 'this request takes no body' }, { connection: 'close' });
        if (browserPage) res.setHeader('content-security-policy', GRAPHIQL_CSP);
        return api.graphql(req, res, { requestId });
      }
      let viewer: Viewer;
      try {
        viewer = await api.authenticate(req.headers.authorization, req.socket.remoteAddress);
        api.admitRequest(viewer);
      } catch (error) {
        if (error instanceof AppError) return sendGraphQLError(req, res, error, close);
        throw error;
      }
      const bytes = Number(declared ?? 0);
      if (bytes > api.maxRequestBytes) {
        return sendJson(res, 413, { error: `request body over ${api.maxRequestBytes} bytes` }, { connection: 'close' });
      }
      if (!budget.admit(req, bytes, viewer.kind === 'tenant' ? viewer.tenantId : 'admin')) {
        return sendJson(
          res,
          503,
          { error: 'too many large requests in progress; retry shortly' },
          { connection: 'close', 'retry-after': '1' },
        );
      }
      // Whatever the response turns out to be (a stream, whichever Accept chose it), it lives no
      // longer than its key, and a subscription started for it ends with it (a 406 included).
      const exchange = new AbortController();
      // A reason made once: abort() without one builds a DOMException, with its stack, per request.
      res.once('close', () => exchange.abort(EXCHANGE_CLOSED));
      if (viewer.kind === 'tenant')
        res.once(
          'close',
          api.sessions.open(viewer.apiKeyId, () => res.destroy()),
        );
      api.graphql(req, res, { requestId, viewer, signal: exchange.signal });
    },
    upgrade: api.upgradeGraphql,
  };
}

const EXCHANGE_CLOSED = Object.freeze(new Error('the HTTP exchange closed'));

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
  const graphiqlAsset = createGraphiQLAssetHandler();
  routes.push(
    graphqlRoute(api),
    {
      label: `${GRAPHIQL_ASSETS_PATH}:name`,
      match: (path) => path.startsWith(GRAPHIQL_ASSETS_PATH),
      handle: (req, res, { path }) => graphiqlAsset(req, res, path),
    },
    {
      label: api.usageExport.path,
      match: (path) => path === api.usageExport.path,
      handle: (req, res, { path }) => api.usageExport.handle(req, res, path),
    },
  );
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
