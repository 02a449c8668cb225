import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { useOpenTelemetry } from '@envelop/opentelemetry';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { trace } from '@opentelemetry/api';
import { usePersistedOperations } from '@graphql-yoga/plugin-persisted-operations';
import { GraphQLError, Kind } from 'graphql';
import type { ExecutionArgs, OperationDefinitionNode } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, maskError } from 'graphql-yoga';
import type { Plugin } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { createArchiver, queueArchive } from './archive/archiver.ts';
import type { Archiver } from './archive/archiver.ts';
import { bearerToken } from './auth/api-keys.ts';
import { createRateLimiter } from './auth/rate-limiter.ts';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { isConnectionError } from './db/errors.ts';
import { sharedSecret } from './db/settings.ts';
import { AppError, RateLimitedError, ServiceUnavailableError, SubscriptionLimitError, UnauthenticatedError } from './errors.ts';
import type { GraphQLContext, Services } from './graphql/context.ts';
import { useHiddenSuggestions, useQueryLimits } from './graphql/limits.ts';
import { schema } from './graphql/schema/index.ts';
import { sendJson } from './http/respond.ts';
import type { KlingClient } from './kling/client.ts';
import type { Logger } from './logger.ts';
import { createUsageExportHandler, USAGE_EXPORT_PATH } from './metering/export-route.ts';
import { createMeteringService } from './metering/metering.ts';
import { createMetrics } from './metrics/metrics.ts';
import type { Metrics } from './metrics/metrics.ts';
import { createTaskFeed } from './pubsub/task-feed.ts';
import { createVideoFileHandler, isVideoFilePath } from './storage/file-route.ts';
import { createLocalVideoStore, sweepStaleWrites } from './storage/local-video-store.ts';
import { createS3VideoStore } from './storage/s3-video-store.ts';
import type { VideoStore } from './storage/video-store.ts';
import { createReconciler, reconcilerLagSeconds } from './tasks/reconciler.ts';
import type { Reconciler } from './tasks/reconciler.ts';
import { createTaskStateMachine } from './tasks/state.ts';
import { createTaskService } from './tasks/tasks.ts';
import { createWatchService } from './tasks/watch.ts';
import { createTenantService } from './tenants/tenants.ts';
import type { Viewer } from './tenants/tenants.ts';
import { createWebhookReceiver, isWebhookPath } from './webhooks/receiver.ts';
import { webhookToken } from './webhooks/tokens.ts';

export type AppDeps = {
  config: Config;
  database: Database;
  logger: Logger;
  upstream: KlingClient;
  /** The instance's metrics; pass the same registry the upstream client reports to. */
  metrics?: Metrics;
  /** Where finished videos are copied; by default built from VIDEO_STORE (null: none). */
  store?: VideoStore | null;
};

export type App = {
  /** Listens on config.host:config.port (0 picks a free port) and resolves with the bound base URL. */
  start(): Promise<{ url: string }>;
  /**
   * Drains: readyz turns 503, background work stops after the jobs in hand, subscriptions end
   * (WebSockets close with 1001, SSE streams complete), in-flight requests finish (bounded by
   * SHUTDOWN_TIMEOUT_MS), yoga is disposed. The caller closes the database afterwards.
   */
  stop(): Promise<void>;
  readonly server: Server;
  readonly services: Services;
  readonly metrics: Metrics;
  /** The reconciler of this instance; null when ROLE=api. */
  readonly reconciler: Reconciler | null;
  /** The video archiver of this instance; null when ROLE=api or VIDEO_STORE=none. */
  readonly archiver: Archiver | null;
  /** PUBLIC_BASE_URL, or the bound address once started. */
  publicBaseUrl(): string;
};

type WsExtra = { request: IncomingMessage; viewer?: Viewer; requestId?: string };
type ServerContext = { req?: IncomingMessage; res?: ServerResponse; extra?: WsExtra };

const HEALTH_PATHS = new Set(['/healthz', '/readyz', '/metrics']);
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
const persistedOperationsModel = z.record(z.string().min(1), z.string().min(1));

/** A bounded label for metrics: the route, never the raw path (which carries ids and tokens). */
function routeOf(path: string): string {
  if (path === '/graphql' || HEALTH_PATHS.has(path) || path === USAGE_EXPORT_PATH) return path;
  if (isWebhookPath(path)) return '/webhooks/kling/:taskId/:token';
  if (path.startsWith('/files/videos/')) return '/files/videos/:key';
  return 'other';
}

/** The operation's type and first root field, a bounded set for metric labels. */
function operationLabels(document: unknown, operationName: string | null | undefined): { type: string; field: string } {
  const definitions = (document as { definitions?: readonly { kind: string }[] } | undefined)?.definitions ?? [];
  const operations = definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operations.find((o) => !operationName || o.name?.value === operationName) ?? operations[0];
  const first = operation?.selectionSet.selections.find((s) => s.kind === Kind.FIELD);
  return { type: operation?.operation ?? 'unknown', field: first?.kind === Kind.FIELD ? first.name.value : 'unknown' };
}

function useOperationMetrics(metrics: Metrics): Plugin {
  const observe = (args: { document: unknown; operationName?: string | null }, started: number, ok: boolean) => {
    const labels = operationLabels(args.document, args.operationName);
    metrics.graphql(labels.type, labels.field, ok ? 'ok' : 'error', (performance.now() - started) / 1000);
  };
  return {
    onExecute({ args }) {
      const started = performance.now();
      return { onExecuteDone: ({ result }) => observe(args, started, !('errors' in result && result.errors?.length)) };
    },
    onSubscribe({ args }) {
      const started = performance.now();
      return { onSubscribeResult: ({ result }) => observe(args, started, !('errors' in result && result.errors?.length)) };
    },
  };
}

function storeFromConfig(config: Config, publicBaseUrl: () => string, secret: string): VideoStore | null {
  switch (config.videoStore) {
    case 'none':
      return null;
    case 'local':
      return createLocalVideoStore({ dir: localVideoDir(config), publicBaseUrl, secret });
    case 's3':
      return createS3VideoStore({
        bucket: config.s3.bucket ?? '',
        region: config.s3.region,
        endpoint: config.s3.endpoint,
        forcePathStyle: config.s3.forcePathStyle,
      });
  }
}

function localVideoDir(config: Config): string {
  return resolve(config.dataDir, 'videos');
}

export async function createApp({ config, database, logger, upstream, metrics = createMetrics(), ...deps }: AppDeps): Promise<App> {
  const webhookSecret = await sharedSecret(database.db, 'webhook_secret', config.webhookSecret);
  const servesApi = config.role !== 'worker';
  const runsJobs = config.role !== 'api';
  let boundUrl: string | null = null;
  const publicBaseUrl = () => config.publicBaseUrl ?? boundUrl ?? `http://localhost:${config.port}`;
  const store = deps.store === undefined ? storeFromConfig(config, publicBaseUrl, webhookSecret) : deps.store;
  const metering = createMeteringService({ db: database.db, prices: config.prices });
  const taskState = createTaskStateMachine({
    finalStateHooks: {
      // The archive job is queued with the final state, in its transaction: it cannot be lost.
      // Without an archiver on this instance (ROLE=api) it is still queued for the workers.
      onSucceeded: store === null ? [metering.recordUsage] : [metering.recordUsage, queueArchive],
      onFailed: [metering.recordUsage],
    },
  });
  const archiver =
    runsJobs && store !== null
      ? createArchiver({
          db: database.db,
          store,
          taskState,
          logger,
          intervalMs: config.reconcilerIntervalMs,
          maxBytes: config.archive.maxBytes,
          timeoutMs: config.archive.timeoutMs,
          maxAttempts: config.archive.maxAttempts,
          allowPrivateUrls: config.allowPrivateUrls ?? false,
          onOutcome: (outcome) => metrics.archiveJob(outcome),
        })
      : null;
  const serveVideoFile =
    store?.kind === 'local' ? createVideoFileHandler({ dir: localVideoDir(config), secret: webhookSecret }) : null;

  const tenants = createTenantService(database.db, {
    adminApiKey: config.adminApiKey,
    authCacheSeconds: config.authCacheSeconds,
  });
  const tasks = createTaskService({
    db: database.db,
    upstream,
    logger,
    admit: metering.admit,
    state: taskState,
    taskDeadlineMinutes: config.taskDeadlineMinutes,
    pendingRecheckSeconds: config.pendingRecheckSeconds,
    callbackUrl: (taskId) => `${publicBaseUrl()}/webhooks/kling/${taskId}/${webhookToken(webhookSecret, taskId)}`,
  });
  const feed = await createTaskFeed(database, logger);
  const limiter = createRateLimiter();
  const services: Services = {
    tenants,
    tasks,
    metering,
    watch: createWatchService({ feed, tasks, logger, maxPerTenant: config.maxSubscriptions.perTenant }),
    async videoUrl(video) {
      if (!video.archive || store === null) return video.upstreamUrl;
      return store.url(video.archive.key, new Date(Date.now() + config.videoUrlTtlSeconds * 1000));
    },
    /** Throws RateLimitedError when the tenant is over its createOmniVideo rate. */
    admitCreate(viewer) {
      if (viewer.kind !== 'tenant') return;
      const perMinute = viewer.rates.createsPerMinute ?? config.rateLimits.createsPerMinute;
      if (perMinute <= 0) return;
      const wait = limiter.take(`create:${viewer.tenantId}`, { perSecond: perMinute / 60, burst: Math.max(1, Math.ceil(perMinute / 6)) });
      if (wait > 0) {
        metrics.rateLimited('create');
        throw new RateLimitedError(`Too many creates: the limit is ${perMinute} per minute; retry in ${wait} s.`, wait);
      }
    },
  };
  metrics.setSources({
    tasksByStatus: tasks.countByStatus,
    activeSubscriptions: () => feed.size(),
    reconcilerLagSeconds: () => reconcilerLagSeconds(database.db),
  });
  const reconciler = runsJobs
    ? createReconciler({
        db: database.db,
        tasks,
        upstream,
        logger,
        taskDeadlineMinutes: config.taskDeadlineMinutes,
        intervalMs: config.reconcilerIntervalMs,
        onCheck: (outcome) => metrics.reconcilerCheck(outcome),
      })
    : null;
  const receiveWebhook = createWebhookReceiver({
    secret: webhookSecret,
    tasks,
    logger,
    onOutcome: (outcome) => metrics.webhook(outcome),
  });
  let draining = false;

  async function viewerFor(authorization: unknown): Promise<Viewer> {
    const token = bearerToken(typeof authorization === 'string' ? authorization : null);
    if (token === null) throw new UnauthenticatedError();
    let viewer: Viewer | null;
    try {
      viewer = await tenants.authenticate(token);
    } catch (error) {
      logger.warn({ err: error }, 'authentication failed: database unavailable');
      throw new ServiceUnavailableError();
    }
    if (viewer === null) throw new UnauthenticatedError('The API key is unknown or has been revoked.');
    return viewer;
  }

  /** The per-tenant request rate: an HTTP 429 (GraphQL error body) with Retry-After when exceeded. */
  function admitRequest(viewer: Viewer): void {
    if (viewer.kind !== 'tenant') return;
    const perSecond = viewer.rates.requestsPerSecond ?? config.rateLimits.requestsPerSecond;
    if (perSecond <= 0) return;
    const wait = limiter.take(`request:${viewer.tenantId}`, { perSecond, burst: Math.max(1, perSecond * 2) });
    if (wait > 0) {
      metrics.rateLimited('request');
      throw new AppError(`Too many requests: the limit is ${perSecond} per second; retry in ${wait} s.`, 'RATE_LIMITED', 429, {
        retryAfterSeconds: wait,
        headers: { 'retry-after': String(wait) },
      });
    }
  }

  const requestIds = new WeakMap<IncomingMessage, string>();
  const plugins: Plugin[] = [
    useQueryLimits(config.queryLimits),
    useHiddenSuggestions(),
    useCSRFPrevention({ requestHeaders: ['authorization', 'x-graphql-yoga-csrf'] }),
    useOperationMetrics(metrics),
  ];
  if (config.otelTracing) {
    // Spans go to whatever SDK the operator registered globally (e.g. `node --import
    // @opentelemetry/auto-instrumentations-node/register`). Variables and results stay out of
    // spans: they may hold inline images and other tenants' data must never reach a shared backend.
    // An envelop plugin: yoga runs it as is, only its context type parameter differs.
    plugins.push(useOpenTelemetry({ resolvers: false, variables: false, result: false }, trace.getTracerProvider()) as Plugin);
  }
  if (config.persistedOperationsFile !== null) {
    const store = new Map(Object.entries(persistedOperationsModel.parse(JSON.parse(readFileSync(config.persistedOperationsFile, 'utf8')))));
    plugins.push(usePersistedOperations({ getPersistedOperation: (key) => store.get(key) ?? null, allowArbitraryOperations: false }));
  }

  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    maskedErrors: {
      // A database that cannot be reached is a retryable 503, not an "Unexpected error".
      maskError: (error, message, isDev) =>
        isConnectionError(error instanceof GraphQLError ? (error.originalError ?? error) : error)
          ? new ServiceUnavailableError()
          : maskError(error, message, isDev),
    },
    cors:
      config.corsOrigins === null
        ? false
        : { origin: config.corsOrigins, methods: ['GET', 'POST'], allowedHeaders: ['authorization', 'content-type', 'x-request-id'] },
    plugins,
    logging: {
      debug: (...args) => logger.debug(args.map(String).join(' ')),
      info: (...args) => logger.info(args.map(String).join(' ')),
      warn: (...args) => logger.warn(args.map(String).join(' ')),
      error: (...args) => logger.error({ err: args.find((a) => a instanceof Error) }, args.map(String).join(' ')),
    },
    context: async (initial): Promise<GraphQLContext> => {
      // WebSocket operations were authenticated once, at connection_init.
      const viewer = initial.extra?.viewer ?? (await viewerFor(initial.request.headers.get('authorization')));
      admitRequest(viewer);
      const requestId = initial.extra?.requestId ?? (initial.req ? requestIds.get(initial.req) : undefined);
      const requestLogger = logger.child({
        requestId,
        tenantId: viewer.kind === 'tenant' ? viewer.tenantId : undefined,
        admin: viewer.kind === 'admin' || undefined,
      });
      return { viewer, services, logger: requestLogger };
    },
  });

  const exportUsage = createUsageExportHandler({ metering, authenticate: viewerFor, logger });
  const openSockets = new Set<Socket>();

  const server = createServer((req, res) => {
    const started = performance.now();
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const given = req.headers['x-request-id'];
    const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    requestIds.set(req, requestId);
    res.setHeader('x-request-id', requestId);
    res.once('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      metrics.http(routeOf(path), req.method ?? 'GET', res.statusCode, seconds);
      logger.debug({ requestId, method: req.method, route: routeOf(path), status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });

    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      if (draining) return sendJson(res, 503, { status: 'draining' });
      void database.isReady().then(
        (ready) => sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'database unavailable' }),
        () => sendJson(res, 503, { status: 'database unavailable' }),
      );
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        (error: unknown) => {
          logger.warn({ err: error }, 'metrics collection failed');
          sendJson(res, 503, { error: 'metrics unavailable' });
        },
      );
      return;
    }
    if (!servesApi) return sendJson(res, 404, { error: 'not found (ROLE=worker serves /healthz, /readyz, /metrics)' });

    if (path === '/graphql') {
      // The body limit is enforced on the declared length: Node's parser never reads past it, and
      // yoga reads the body itself, so a body without a declared length (chunked) is refused.
      const declared = req.headers['content-length'];
      if (declared === undefined && req.headers['transfer-encoding'] !== undefined) {
        return sendJson(res, 411, { error: 'send the request body with a Content-Length' }, { connection: 'close' });
      }
      if (Number(declared) > config.maxRequestBytes) {
        return sendJson(res, 413, { error: `request body over ${config.maxRequestBytes} bytes` }, { connection: 'close' });
      }
      return yoga(req, res);
    }
    if (path === USAGE_EXPORT_PATH) {
      exportUsage(req, res).catch((error: unknown) => {
        logger.error({ err: error }, 'usage export failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      });
      return;
    }
    if (serveVideoFile !== null && isVideoFilePath(path)) {
      serveVideoFile(req, res, path).catch((error: unknown) => {
        logger.error({ err: error }, 'video file handler failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      });
      return;
    }
    if (isWebhookPath(path)) {
      receiveWebhook(req, res, path).catch((error: unknown) => {
        logger.error({ err: error }, 'webhook handler failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      });
      return;
    }
    sendJson(res, 404, { error: 'not found' });
  });
  server.on('connection', (socket) => {
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: config.ws.maxPayloadBytes });
  const wsServer = useServer<Record<string, unknown> | undefined, WsExtra>(
    {
      connectionInitWaitTimeout: config.ws.connectionInitTimeoutMs,
      onConnect: async (ctx) => {
        try {
          ctx.extra.viewer = await viewerFor(ctx.connectionParams?.authorization);
          ctx.extra.requestId = randomUUID();
          return true;
        } catch {
          return false; // graphql-ws closes with 4403 Forbidden
        }
      },
      onSubscribe: async (ctx, _id, params) => {
        const perConnection = config.maxSubscriptions.perConnection;
        if (perConnection > 0 && Object.keys(ctx.subscriptions).length > perConnection) {
          return [new SubscriptionLimitError(`Too many subscriptions on this connection (limit ${perConnection}).`)];
        }
        const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.request.socket, params });
        let document;
        try {
          document = enveloped.parse(params.query);
        } catch (error) {
          return [error instanceof AppError ? error : new AppError(error instanceof Error ? error.message : 'invalid query', 'GRAPHQL_PARSE_FAILED')];
        }
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length > 0) return errors;
        let contextValue;
        try {
          contextValue = await enveloped.contextFactory();
        } catch (error) {
          if (error instanceof AppError) return [error];
          throw error;
        }
        const args: ExecutionArgs & { rootValue: unknown } = {
          schema: enveloped.schema,
          operationName: params.operationName ?? null,
          document,
          variableValues: params.variables ?? null,
          contextValue,
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
        return args;
      },
      execute: (args) => (args.rootValue as { execute: (a: unknown) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: unknown) => unknown }).subscribe(args) as never,
    },
    wss,
  );
  // Keep-alive: a socket that does not answer a ping within one interval is dead (e.g. a vanished mobile client).
  const alive = new WeakMap<WebSocket, boolean>();
  wss.on('connection', (socket) => {
    alive.set(socket, true);
    socket.on('pong', () => alive.set(socket, true));
  });
  const keepalive =
    config.ws.keepaliveMs > 0
      ? setInterval(() => {
          for (const socket of wss.clients) {
            if (alive.get(socket) === false) {
              socket.terminate();
              continue;
            }
            alive.set(socket, false);
            socket.ping();
          }
        }, config.ws.keepaliveMs)
      : null;
  keepalive?.unref();

  server.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '/').split('?')[0];
    if (!servesApi || path !== '/graphql' || draining) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  return {
    server,
    services,
    metrics,
    reconciler,
    archiver,
    publicBaseUrl,
    async start() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      boundUrl = `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${address.port}`;
      reconciler?.start();
      if (archiver !== null && store?.kind === 'local') {
        const swept = await sweepStaleWrites(localVideoDir(config), 2 * config.archive.timeoutMs);
        if (swept > 0) logger.info({ swept }, 'removed partial video writes left by a crash');
      }
      archiver?.start();
      return { url: boundUrl };
    },
    async stop() {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([reconciler?.stop(), archiver?.stop()]);
      if (keepalive !== null) clearInterval(keepalive);
      // Ends every subscription (SSE streams complete), then closes the sockets as "going away".
      await feed.close();
      for (const client of wss.clients) client.close(1001, 'server shutting down');
      await wsServer.dispose();
      server.closeIdleConnections();
      const timeout = new Promise<'timeout'>((resolve) => {
        setTimeout(() => resolve('timeout'), config.shutdownTimeoutMs).unref();
      });
      if ((await Promise.race([closed, timeout])) === 'timeout') {
        logger.warn({ open: openSockets.size }, 'shutdown timeout: closing remaining connections');
        server.closeAllConnections();
        await closed;
      }
      await yoga.dispose();
    },
  };
}
