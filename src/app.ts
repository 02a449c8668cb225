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
import { createJobLoop } from './jobs/loop.ts';
import { createMetrics } from './metrics/metrics.ts';
import type { Metrics } from './metrics/metrics.ts';
import { useOperationMetrics } from './metrics/operation-metrics.ts';
import { createChangeLog, createCursorCodec } from './pubsub/change-log.ts';
import { createHttpServer } from './server/http-server.ts';
import { listen } from './http/listen.ts';
import { drain } from './server/lifecycle.ts';
import { createRoutes } from './server/routes.ts';
import { createVideoFileHandler, isVideoFilePath } from './storage/file-route.ts';
import { storeFromConfig } from './storage/from-config.ts';
import { sweepStaleWrites } from './storage/local-video-store.ts';
import type { VideoStore } from './storage/video-store.ts';
import { createReconciler, reconcilerLagSeconds } from './tasks/reconciler.ts';
import type { Reconciler } from './tasks/reconciler.ts';
import { createTaskStateMachine } from './tasks/state.ts';
import { createTaskService } from './tasks/tasks.ts';
import { createDispatcher, watchRunTimes } from './tasks/dispatcher.ts';
import { createWatchService } from './tasks/watch.ts';
import { createTenantService } from './tenants/tenants.ts';
import { schema } from './graphql/schema/index.ts';
import { createTaskSerializer } from './graphql/task-payload.ts';
import { createWebhookEndpointService } from './webhooks/endpoints.ts';
import { systemResolver } from './webhooks/outbound-address.ts';
import type { HostResolver } from './webhooks/outbound-address.ts';
import { createOutboundWebhooks } from './webhooks/outbound.ts';
import type { OutboundWebhooks } from './webhooks/outbound.ts';
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
  /** How outbound webhook hosts are resolved (tests inject one to change a DNS answer). */
  webhookResolver?: HostResolver;
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
  /** The outbound webhook jobs of this instance; null when ROLE=api. */
  readonly outboundWebhooks: OutboundWebhooks | null;
  /** PUBLIC_BASE_URL, or the bound address once started. */
  publicBaseUrl(): string;
};

/** Change-log rows deleted per prune transaction; a full batch prunes again at once. */
const PRUNE_BATCH = 5_000;

type Wiring = Required<Pick<AppDeps, 'config' | 'database' | 'logger' | 'upstream' | 'metrics' | 'clock'>> & {
  persistedOperations: ReadonlyMap<string, string> | null;
  webhookSecret: string;
  store: VideoStore | null;
  publicBaseUrl: () => string;
  webhookResolver: HostResolver;
  /** Wakes this instance's webhook sender (set once the jobs exist; a no-op on ROLE=api). */
  wakeWebhookSender: () => void;
};

/** The services the API and the jobs share: tenants and keys, metering, the task state machine and tasks, live updates. */
async function createCore(w: Wiring) {
  const { config, database, logger, clock, metrics, store } = w;
  const tenants = createTenantService(database.db, {
    adminApiKey: config.adminApiKey,
    authCacheSeconds: config.authCacheSeconds,
    clock,
    onKeyRevoked: (id) => sessions.end(id),
  });
  // Other instances learn of a revocation by asking, once per auth-cache period.
  const sessions = createKeySessions({ liveKeys: tenants.liveKeys, intervalMs: Math.max(500, config.authCacheSeconds * 1000), logger });
  const metering = createMeteringService({ db: database.db, prices: config.prices, clock });
  const changeLog = await createChangeLog(database, logger, { pollMs: config.changeLog.pollMs });
  const taskState = createTaskStateMachine({
    onCommitted: () => changeLog.wake(),
    finalStateHooks: {
      // The archive job is queued with the final state, in its transaction: it cannot be lost.
      // Without an archiver on this instance (ROLE=api) it is still queued for the workers.
      onSucceeded: store === null ? [metering.recordUsage] : [metering.recordUsage, queueArchive],
      onFailed: [metering.recordUsage],
    },
  });
  const runTimes = watchRunTimes(changeLog);
  const rateLimits = createRateLimits({ defaults: config.rateLimits, clock, onLimited: (kind) => metrics.rateLimited(kind) });
  const tasks = createTaskService({
    db: database.db,
    upstream: w.upstream,
    logger,
    state: taskState,
    admit: metering.admit,
    admitCreate: rateLimits.admitCreate,
    taskDeadlineMinutes: config.taskDeadlineMinutes,
    pendingRecheckSeconds: config.pendingRecheckSeconds,
    maxInFlight: config.upstreamMaxInFlight,
    onDispatched: (waitedMs) => metrics.queueWait(waitedMs),
    onThrottled: (reason) => metrics.upstreamThrottled(reason),
    cost: metering.estimate,
    meanRunSeconds: () => runTimes.meanSeconds(),
    callbackUrl: (taskId) => `${w.publicBaseUrl()}/webhooks/kling/${taskId}/${webhookToken(w.webhookSecret, taskId)}`,
  });
  const watch = createWatchService({
    log: changeLog,
    tasks,
    cursors: createCursorCodec(w.webhookSecret),
    logger,
    maxPerTenant: config.maxSubscriptions.perTenant,
  });
  const webhooks = createWebhookEndpointService({
    db: database.db,
    allowPrivateUrls: config.allowPrivateUrls,
    resolve: w.webhookResolver,
    onQueued: () => w.wakeWebhookSender(),
  });
  const services: Services = {
    tenants,
    tasks,
    metering,
    watch,
    webhooks,
    rateLimits,
    async videoUrl(video) {
      if (!video.archive || store === null) return video.upstreamUrl;
      return store.url(video.archive.key, new Date(clock.now() + config.videoUrlTtlSeconds * 1000));
    },
  };
  metrics.setSources({
    tasksByStatus: tasks.countByStatus,
    activeSubscriptions: () => watch.size(),
    reconcilerLagSeconds: () => reconcilerLagSeconds(database.db),
    upstreamBudget: tasks.budget,
  });
  return { services, tenants, tasks, metering, taskState, changeLog, watch, sessions, rateLimits };
}

type Core = Awaited<ReturnType<typeof createCore>>;

/** The background jobs of ROLE=worker and ROLE=all: the reconciler, and the archiver when videos are stored. */
function createJobs(w: Wiring, core: Core) {
  const { config, database, logger, metrics, store } = w;
  if (config.role === 'api') return { reconciler: null, archiver: null, pruner: null, dispatcher: null, outboundWebhooks: null };
  const dispatcher = createDispatcher({ tasks: core.tasks, changes: core.changeLog, intervalMs: config.reconcilerIntervalMs, logger });
  const pruner = createJobLoop({
    name: 'change-log-prune',
    tick: () => core.changeLog.prune(config.changeLog.retentionSeconds, PRUNE_BATCH),
    batchSize: PRUNE_BATCH,
    intervalMs: 60_000,
    logger,
  });
  const reconciler = createReconciler({
    db: database.db,
    tasks: core.tasks,
    upstream: w.upstream,
    logger,
    taskDeadlineMinutes: config.taskDeadlineMinutes,
    intervalMs: config.reconcilerIntervalMs,
    onCheck: (outcome) => metrics.reconcilerCheck(outcome),
    clock: w.clock,
  });
  const archiver =
    store === null
      ? null
      : createArchiver({
          db: database.db,
          store,
          taskState: core.taskState,
          logger,
          intervalMs: config.reconcilerIntervalMs,
          maxBytes: config.archive.maxBytes,
          timeoutMs: config.archive.timeoutMs,
          maxAttempts: config.archive.maxAttempts,
          allowPrivateUrls: config.allowPrivateUrls,
          onOutcome: (outcome) => metrics.archiveJob(outcome),
        });
  const outboundWebhooks = createOutboundWebhooks({
    db: database.db,
    logger,
    serializeTask: createTaskSerializer({ schema, services: core.services, logger }),
    settings: {
      retryScheduleSeconds: config.webhooks.retryScheduleSeconds,
      timeoutMs: config.webhooks.timeoutMs,
      disableAfterSeconds: config.webhooks.disableAfterSeconds,
      allowPrivateUrls: config.allowPrivateUrls,
      resolve: w.webhookResolver,
    },
    retentionSeconds: config.webhooks.retentionSeconds,
    intervalMs: config.webhooks.pollMs,
  });
  w.wakeWebhookSender = outboundWebhooks.wakeSend;
  core.changeLog.listen(() => outboundWebhooks.wakeDispatch());
  return { reconciler, archiver, pruner, dispatcher, outboundWebhooks };
}

/** GraphQL over HTTP, SSE and WebSocket, and the HTTP routes beside it. */
function createHttp(w: Wiring, core: Core, draining: () => boolean) {
  const { config, logger, metrics } = w;
  const authenticate = createAuthenticator({ tenants: core.tenants, logger, clock: w.clock });
  const yoga = createYogaServer({
    services: core.services,
    logger,
    authenticate,
    rateLimits: core.rateLimits,
    queryLimits: config.queryLimits,
    corsOrigins: config.corsOrigins,
    persistedOperations: w.persistedOperations,
    otelTracing: config.otelTracing,
    plugins: [useOperationMetrics(metrics)],
  });
  const sockets = createGraphQLWebSockets({
    yoga,
    authenticate,
    sessions: core.sessions,
    maxPayloadBytes: config.ws.maxPayloadBytes,
    connectionInitTimeoutMs: config.ws.connectionInitTimeoutMs,
    keepaliveMs: config.ws.keepaliveMs,
    maxSubscriptionsPerConnection: config.maxSubscriptions.perConnection,
  });
  const videoFiles =
    w.store?.kind === 'local' && config.videoStore.kind === 'local'
      ? { match: isVideoFilePath, handle: createVideoFileHandler({ dir: config.videoStore.dir, secret: w.webhookSecret }) }
      : null;
  const routes = createRoutes({
    database: w.database,
    metrics,
    metricsToken: config.metricsToken,
    logger,
    draining,
    api:
      config.role === 'worker'
        ? null
        : {
            graphql: (req, res, context) => void yoga(req, res, context),
            upgradeGraphql: sockets.handleUpgrade,
            authenticate,
            admitRequest: core.rateLimits.admitRequest,
            sessions: core.sessions,
            maxRequestBytes: config.maxRequestBytes,
            maxInflightBodyBytes: config.maxInflightBodyBytes,
            usageExport: {
              path: USAGE_EXPORT_PATH,
              handle: createUsageExportHandler({
                metering: core.metering,
                authenticate,
                admitRequest: core.rateLimits.admitRequest,
                logger,
              }),
            },
            videoFiles,
            webhooks: {
              match: isWebhookPath,
              handle: createWebhookReceiver({
                secret: w.webhookSecret,
                tasks: core.tasks,
                logger,
                onOutcome: (outcome) => metrics.webhook(outcome),
              }),
            },
          },
  });
  return { yoga, sockets, server: createHttpServer({ routes, logger, metrics, draining, requestTimeoutMs: config.requestTimeoutMs }) };
}

/** The composition root: builds every part from its dependencies and wires them together. */
export async function createApp(deps: AppDeps): Promise<App> {
  const { config, database, logger } = deps;
  let boundUrl: string | null = null;
  let draining = false;
  const publicBaseUrl = () => config.publicBaseUrl ?? boundUrl ?? `http://localhost:${config.port}`;
  const webhookSecret = await sharedSecret(database.db, 'webhook_secret', config.webhookSecret);
  const wiring: Wiring = {
    ...deps,
    metrics: deps.metrics ?? createMetrics(),
    clock: deps.clock ?? systemClock,
    persistedOperations: deps.persistedOperations ?? null,
    webhookSecret,
    publicBaseUrl,
    webhookResolver: deps.webhookResolver ?? systemResolver,
    wakeWebhookSender: () => {},
    store: deps.store === undefined ? storeFromConfig(config.videoStore, { publicBaseUrl, secret: webhookSecret }) : deps.store,
  };
  const core = await createCore(wiring);
  const { reconciler, archiver, pruner, dispatcher, outboundWebhooks } = createJobs(wiring, core);
  const { yoga, sockets, server } = createHttp(wiring, core, () => draining);
  const localVideoDir = config.videoStore.kind === 'local' ? config.videoStore.dir : null;

  return {
    server,
    services: core.services,
    metrics: wiring.metrics,
    reconciler,
    archiver,
    outboundWebhooks,
    publicBaseUrl,
    async start() {
      boundUrl = await listen(server, config.port, config.host);
      if (config.role !== 'worker') core.sessions.start();
      reconciler?.start();
      dispatcher?.start();
      pruner?.start();
      if (archiver !== null && localVideoDir !== null) {
        const swept = await sweepStaleWrites(localVideoDir, 2 * config.archive.timeoutMs);
        if (swept > 0) logger.info({ swept }, 'removed partial video writes left by a crash');
      }
      archiver?.start();
      outboundWebhooks?.start();
      return { url: boundUrl };
    },
    async stop() {
      draining = true;
      await drain({
        server,
        timeoutMs: config.shutdownTimeoutMs,
        logger,
        stopJobs: () =>
          Promise.all([
            reconciler?.stop(),
            archiver?.stop(),
            pruner?.stop(),
            dispatcher?.stop(),
            outboundWebhooks?.stop(),
            // Creates that passes of this instance (its own creates' passes included) sent in the background.
            core.tasks.drainDispatches(),
            core.sessions.stop(),
          ]),
        // Ends every subscription (SSE streams complete), then closes the sockets as "going away".
        endStreams: async () => {
          core.watch.close();
          await sockets.close();
          await core.changeLog.close();
        },
        dispose: async () => yoga.dispose(),
      });
    },
  };
}
