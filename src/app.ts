import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ExecutionArgs } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { bearerToken } from './auth/api-keys.ts';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { sharedSecret } from './db/settings.ts';
import { ServiceUnavailableError, UnauthenticatedError } from './errors.ts';
import type { GraphQLContext, Services } from './graphql/context.ts';
import { schema } from './graphql/schema/index.ts';
import { sendJson } from './http/respond.ts';
import type { KlingClient } from './kling/client.ts';
import type { Logger } from './logger.ts';
import { createTaskFeed } from './pubsub/task-feed.ts';
import { createUsageExportHandler, USAGE_EXPORT_PATH } from './metering/export-route.ts';
import { createMeteringService } from './metering/metering.ts';
import { createReconciler } from './tasks/reconciler.ts';
import type { Reconciler } from './tasks/reconciler.ts';
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
};

export type App = {
  /** Listens on config.host:config.port (0 picks a free port) and resolves with the bound base URL. */
  start(): Promise<{ url: string }>;
  /**
   * Drains: readyz turns 503, background work stops after the jobs in hand, WebSockets close with
   * 1001, in-flight requests finish (bounded by SHUTDOWN_TIMEOUT_MS), yoga is disposed. The caller
   * closes the database afterwards.
   */
  stop(): Promise<void>;
  readonly server: Server;
  readonly services: Services;
  /** The reconciler of this instance; null when ROLE=api. */
  readonly reconciler: Reconciler | null;
  /** PUBLIC_BASE_URL, or the bound address once started. */
  publicBaseUrl(): string;
};

type WsExtra = { request: IncomingMessage; viewer?: Viewer };
type ServerContext = { req?: IncomingMessage; res?: ServerResponse; extra?: WsExtra };

const HEALTH_PATHS = new Set(['/healthz', '/readyz']);

export async function createApp({ config, database, logger, upstream }: AppDeps): Promise<App> {
  const webhookSecret = await sharedSecret(database.db, 'webhook_secret', config.webhookSecret);
  const servesApi = config.role !== 'worker';
  const runsJobs = config.role !== 'api';
  let boundUrl: string | null = null;
  const publicBaseUrl = () => config.publicBaseUrl ?? boundUrl ?? `http://localhost:${config.port}`;

  const tenants = createTenantService(database.db, { adminApiKey: config.adminApiKey });
  const metering = createMeteringService({ db: database.db, prices: config.prices });
  const tasks = createTaskService({
    db: database.db,
    upstream,
    logger,
    admit: metering.admit,
    onFinal: metering.record,
    taskDeadlineMinutes: config.taskDeadlineMinutes,
    callbackUrl: (taskId) => `${publicBaseUrl()}/webhooks/kling/${taskId}/${webhookToken(webhookSecret, taskId)}`,
  });
  const feed = await createTaskFeed(database, logger);
  const services: Services = { tenants, tasks, metering, watch: createWatchService({ feed, tasks, logger }) };
  const reconciler = runsJobs
    ? createReconciler({
        db: database.db,
        tasks,
        upstream,
        logger,
        taskDeadlineMinutes: config.taskDeadlineMinutes,
        intervalMs: config.reconcilerIntervalMs,
      })
    : null;
  const receiveWebhook = createWebhookReceiver({ secret: webhookSecret, tasks, logger });
  const exportUsage = createUsageExportHandler({ metering, authenticate: viewerFor, logger });
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

  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    maskedErrors: true,
    logging: {
      debug: (...args) => logger.debug(args.map(String).join(' ')),
      info: (...args) => logger.info(args.map(String).join(' ')),
      warn: (...args) => logger.warn(args.map(String).join(' ')),
      error: (...args) => logger.error({ err: args.find((a) => a instanceof Error) }, args.map(String).join(' ')),
    },
    context: async (initial): Promise<GraphQLContext> => {
      // WebSocket operations were authenticated once, at connection_init.
      const viewer = initial.extra?.viewer ?? (await viewerFor(initial.request.headers.get('authorization')));
      return { viewer, services, logger };
    },
  });

  const openSockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      if (draining) return sendJson(res, 503, { status: 'draining' });
      void database.isReady().then(
        (ready) => sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'database unavailable' }),
        () => sendJson(res, 503, { status: 'database unavailable' }),
      );
      return;
    }
    if (!servesApi && !HEALTH_PATHS.has(path)) return sendJson(res, 404, { error: 'not found (ROLE=worker)' });
    if (path === '/graphql') return yoga(req, res);
    if (path === USAGE_EXPORT_PATH) {
      exportUsage(req, res).catch((error: unknown) => {
        logger.error({ err: error }, 'usage export failed');
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

  const wss = new WebSocketServer({ noServer: true });
  const wsServer = useServer<Record<string, unknown> | undefined, WsExtra>(
    {
      onConnect: async (ctx) => {
        try {
          ctx.extra.viewer = await viewerFor(ctx.connectionParams?.authorization);
          return true;
        } catch {
          return false; // graphql-ws closes with 4403 Forbidden
        }
      },
      onSubscribe: async (ctx, _id, params) => {
        const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.request.socket, params });
        const document = enveloped.parse(params.query);
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length > 0) return errors;
        const args: ExecutionArgs & { rootValue: unknown } = {
          schema: enveloped.schema,
          operationName: params.operationName ?? null,
          document,
          variableValues: params.variables ?? null,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
        return args;
      },
      execute: (args) => (args.rootValue as { execute: (a: unknown) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: unknown) => unknown }).subscribe(args) as never,
    },
    wss,
  );
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
    reconciler,
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
      return { url: boundUrl };
    },
    async stop() {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await reconciler?.stop();
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
      await feed.close();
    },
  };
}
