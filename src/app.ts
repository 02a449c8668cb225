import type { Server } from 'node:http';
import { createArchiver, queueArchive } from './archive/archiver.ts';
import type { Archiver } from './archive/archiver.ts';
import { createAuthenticator } from './auth/authenticate.ts';
import { createKeySessions } from './auth/key-sessions.ts';
import { createRateLimits } from './auth/rate-limits.ts';
import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { sharedSecret } from './db/settings.ts';
import type { Services } from './graphql/context.ts';
import { createGraphQLWebSockets } from './graphql/ws.ts';
import { createYogaServer } from './graphql/yoga.ts';
import type { KlingClient } from './kling/client.ts';
import type { Logger } from './logger.ts';
import { createUsageExportHandler, USAGE_EXPORT_PATH } from './metering/export-route.ts';
import { createMeteringService } from './metering/metering.ts';
import { createMetrics } from './metrics/metrics.ts';
import type { Metrics } from './metrics/metrics.ts';
import { useOperationMetrics } from './metrics/operation-metrics.ts';
import { createTaskFeed } from './pubsub/task-feed.ts';
import { createHttpServer } from './server/http-server.ts';
import { drain, listen } from './server/lifecycle.ts';
import { createRoutes } from './server/routes.ts';
import { createVideoFileHandler, isVideoFilePath } from './storage/file-route.ts';
import { storeFromConfig } from './storage/from-config.ts';
import { sweepStaleWrites } from './storage/local-video-store.ts';
import type { VideoStore } from './storage/video-store.ts';
import { createReconciler, reconcilerLagSeconds } from './tasks/reconciler.ts';
import type { Reconciler } from './tasks/reconciler.ts';
import { createTaskStateMachine } from './tasks/state.ts';
import { createTaskService } from './tasks/tasks.ts';
import { createWatchService } from './tasks/watch.ts';
import { createTenantService } from './tenants/tenants.ts';
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
  /** PERSISTED_OPERATIONS_FILE as read by main: only these operations run. */
  persistedOperations?: ReadonlyMap<string, string> | null;
  clock?: Clock;
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

/** The composition root: builds every part from its dependencies and wires them together. */
export async function createApp({ config, database, logger, upstream, metrics = createMetrics(), clock = systemClock, ...deps }: AppDeps): Promise<App> {
  const webhookSecret = await sharedSecret(database.db, 'webhook_secret', config.webhookSecret);
  const runsJobs = config.role !== 'api';
  let boundUrl: string | null = null;
  let draining = false;
  const publicBaseUrl = () => config.publicBaseUrl ?? boundUrl ?? `http://localhost:${config.port}`;
  const store = deps.store === undefined ? storeFromConfig(config.videoStore, { publicBaseUrl, secret: webhookSecret }) : deps.store;

  const tenants = createTenantService(database.db, {
    adminApiKey: config.adminApiKey,
    authCacheSeconds: config.authCacheSeconds,
    clock,
    onKeyRevoked: (id) => sessions.end(id),
  });
  // Other instances learn of a revocation by asking, once per auth-cache period.
  const sessions = createKeySessions({ liveKeys: tenants.liveKeys, intervalMs: Math.max(500, config.authCacheSeconds * 1000), logger });
  const metering = createMeteringService({ db: database.db, prices: config.prices, clock });
  const taskState = createTaskStateMachine({
    finalStateHooks: {
      // The archive job is queued with the final state, in its transaction: it cannot be lost.
      // Without an archiver on this instance (ROLE=api) it is still queued for the workers.
      onSucceeded: store === null ? [metering.recordUsage] : [metering.recordUsage, queueArchive],
      onFailed: [metering.recordUsage],
    },
  });
  const tasks = createTaskService({
    db: database.db,
    upstream,
    logger,
    state: taskState,
    admit: metering.admit,
    taskDeadlineMinutes: config.taskDeadlineMinutes,
    pendingRecheckSeconds: config.pendingRecheckSeconds,
    callbackUrl: (taskId) => `${publicBaseUrl()}/webhooks/kling/${taskId}/${webhookToken(webhookSecret, taskId)}`,
  });
  const feed = await createTaskFeed(database, logger);
  const rateLimits = createRateLimits({ defaults: config.rateLimits, clock, onLimited: (kind) => metrics.rateLimited(kind) });
  const services: Services = {
    tenants,
    tasks,
    metering,
    watch: createWatchService({ feed, tasks, logger, maxPerTenant: config.maxSubscriptions.perTenant, clock }),
    async videoUrl(video) {
      if (!video.archive || store === null) return video.upstreamUrl;
      return store.url(video.archive.key, new Date(clock.now() + config.videoUrlTtlSeconds * 1000));
    },
    admitCreate(viewer) {
      if (viewer.kind === 'tenant') rateLimits.admitCreate(viewer.tenantId, viewer.rates.createsPerMinute);
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
        clock,
      })
    : null;
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
          allowPrivateUrls: config.allowPrivateUrls,
          onOutcome: (outcome) => metrics.archiveJob(outcome),
        })
      : null;

  const authenticate = createAuthenticator({ tenants, logger, clock });
  const yoga = createYogaServer({
    services,
    logger,
    authenticate,
    rateLimits,
    queryLimits: config.queryLimits,
    corsOrigins: config.corsOrigins,
    persistedOperations: deps.persistedOperations ?? null,
    otelTracing: config.otelTracing,
    plugins: [useOperationMetrics(metrics)],
  });
  const sockets = createGraphQLWebSockets({
    yoga,
    authenticate,
    sessions,
    maxPayloadBytes: config.ws.maxPayloadBytes,
    connectionInitTimeoutMs: config.ws.connectionInitTimeoutMs,
    keepaliveMs: config.ws.keepaliveMs,
    maxSubscriptionsPerConnection: config.maxSubscriptions.perConnection,
  });
  const localVideoDir = config.videoStore.kind === 'local' ? config.videoStore.dir : null;
  const routes = createRoutes({
    database,
    metrics,
    metricsToken: config.metricsToken,
    logger,
    draining: () => draining,
    api:
      config.role === 'worker'
        ? null
        : {
            graphql: (req, res, context) => void yoga(req, res, context),
            upgradeGraphql: sockets.handleUpgrade,
            authenticate,
            admitRequest: rateLimits.admitRequest,
            sessions,
            maxRequestBytes: config.maxRequestBytes,
            maxInflightBodyBytes: config.maxInflightBodyBytes,
            usageExport: { path: USAGE_EXPORT_PATH, handle: createUsageExportHandler({ metering, authenticate, logger }) },
            videoFiles:
              store?.kind === 'local' && localVideoDir !== null
                ? { match: isVideoFilePath, handle: createVideoFileHandler({ dir: localVideoDir, secret: webhookSecret }) }
                : null,
            webhooks: {
              match: isWebhookPath,
              handle: createWebhookReceiver({ secret: webhookSecret, tasks, logger, onOutcome: (outcome) => metrics.webhook(outcome) }),
            },
          },
  });
  const server = createHttpServer({ routes, logger, metrics, draining: () => draining });

  return {
    server,
    services,
    metrics,
    reconciler,
    archiver,
    publicBaseUrl,
    async start() {
      boundUrl = await listen(server, config.port, config.host);
      if (config.role !== 'worker') sessions.start();
      reconciler?.start();
      if (archiver !== null && localVideoDir !== null) {
        const swept = await sweepStaleWrites(localVideoDir, 2 * config.archive.timeoutMs);
        if (swept > 0) logger.info({ swept }, 'removed partial video writes left by a crash');
      }
      archiver?.start();
      return { url: boundUrl };
    },
    async stop() {
      draining = true;
      await drain({
        server,
        timeoutMs: config.shutdownTimeoutMs,
        logger,
        stopJobs: () => Promise.all([reconciler?.stop(), archiver?.stop(), sessions.stop()]),
        // Ends every subscription (SSE streams complete), then closes the sockets as "going away".
        endStreams: async () => {
          await feed.close();
          await sockets.close();
        },
        dispose: async () => yoga.dispose(),
      });
    },
  };
}
