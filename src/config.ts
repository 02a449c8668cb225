import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_QUERY_LIMITS } from './query-limits.ts';
import type { QueryLimits } from './query-limits.ts';

/** Seven 10 MB images in base64 (4/3 of the bytes) plus room for the rest of the request. */
const DEFAULT_MAX_REQUEST_BYTES = 7 * 4 * Math.ceil((10 * 1024 * 1024) / 3) + 1024 * 1024;

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const port = z.coerce
  .number({ error: 'must be a port number' })
  .int('must be a whole number')
  .min(0, 'must be between 0 and 65535')
  .max(65535, 'must be between 0 and 65535');

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).transform((value) => value.replace(/\/+$/, ''));

const environmentModel = z
  .object({
    PORT: port.default(4000),
    HOST: z.string().min(1).default('0.0.0.0'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\/.+/, 'must be a postgres:// or postgresql:// URL')
      .optional(),
    DATA_DIR: z.string().min(1).default('.data'),
    COMETAPI_KEY: z.string().min(1).optional(),
    COMETAPI_BASE_URL: httpUrl.default('https://api.cometapi.com'),
    PUBLIC_BASE_URL: httpUrl.optional(),
    WEBHOOK_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    ADMIN_API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ROLE: z.enum(['all', 'api', 'worker']).default('all'),
    VIDEO_STORE: z.enum(['local', 's3', 'none']).default('local'),
    S3_BUCKET: z.string().min(1).optional(),
    S3_REGION: z.string().min(1).optional(),
    S3_ENDPOINT: httpUrl.optional(),
    S3_FORCE_PATH_STYLE: booleanFlag.default(false),
    ALLOW_PRIVATE_URLS: booleanFlag.optional(),
    ARCHIVE_MAX_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .default(500 * 1024 * 1024),
    ARCHIVE_TIMEOUT_MS: z.coerce
      .number()
      .int()
      .min(100)
      .default(10 * 60_000),
    ARCHIVE_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(8),
    VIDEO_URL_TTL_SECONDS: z.coerce.number().int().min(10).default(3600),
    CORS_ORIGINS: z
      .string()
      .transform((value) =>
        value
          .split(',')
          .map((origin) => origin.trim())
          .filter((origin) => origin.length > 0),
      )
      .optional(),
    TASK_DEADLINE_MINUTES: z.coerce.number().int().min(1, 'must be at least 1').default(30),
    SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
    PRICE_TABLE: z
      .string()
      .transform((value, ctx) => {
        try {
          return JSON.parse(value) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be JSON' });
          return z.NEVER;
        }
      })
      .pipe(
        z.object({
          STD: z.number().nonnegative(),
          PRO: z.number().nonnegative(),
          STD_VIDEO: z.number().nonnegative(),
          PRO_VIDEO: z.number().nonnegative(),
        }),
      )
      .optional(),
    RECONCILER_INTERVAL_MS: z.coerce.number().int().min(10, 'must be at least 10').default(1_000),
    RATE_LIMIT_REQUESTS_PER_SECOND: z.coerce.number().min(0).default(20),
    RATE_LIMIT_CREATES_PER_MINUTE: z.coerce.number().min(0).default(60),
    MAX_REQUEST_BYTES: z.coerce.number().int().min(1024).default(DEFAULT_MAX_REQUEST_BYTES),
    WS_MAX_PAYLOAD_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024),
    WS_CONNECTION_INIT_TIMEOUT_MS: z.coerce.number().int().min(10).default(10_000),
    WS_KEEPALIVE_MS: z.coerce.number().int().min(0).default(30_000),
    MAX_SUBSCRIPTIONS_PER_CONNECTION: z.coerce.number().int().min(0).default(100),
    MAX_SUBSCRIPTIONS_PER_TENANT: z.coerce.number().int().min(0).default(2_000),
    QUERY_MAX_DEPTH: z.coerce.number().int().min(1).default(DEFAULT_QUERY_LIMITS.depth),
    QUERY_MAX_ALIASES: z.coerce.number().int().min(0).default(DEFAULT_QUERY_LIMITS.aliases),
    QUERY_MAX_TOKENS: z.coerce.number().int().min(10).default(DEFAULT_QUERY_LIMITS.tokens),
    QUERY_MAX_DIRECTIVES: z.coerce.number().int().min(0).default(DEFAULT_QUERY_LIMITS.directives),
    QUERY_MAX_COST: z.coerce.number().int().min(1).default(DEFAULT_QUERY_LIMITS.cost),
    QUERY_MAX_LENGTH: z.coerce.number().int().min(100).default(DEFAULT_QUERY_LIMITS.length),
    PERSISTED_OPERATIONS_FILE: z.string().min(1).optional(),
    OTEL_TRACING: booleanFlag.default(false),
    CHANGE_LOG_POLL_MS: z.coerce.number().int().min(10).default(1_000),
    CHANGE_LOG_RETENTION_HOURS: z.coerce
      .number()
      .min(1)
      .default(7 * 24),
    REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1_000).default(120_000),
    METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
    MAX_INFLIGHT_BODY_BYTES: z.coerce.number().int().min(1024).optional(),
    AUTH_CACHE_SECONDS: z.coerce.number().min(0).max(300).default(5),
    WEBHOOK_RETRY_SCHEDULE: z
      .string()
      .transform((value) => value.split(',').map((part) => Number(part.trim())))
      .pipe(
        z
          .array(
            z
              .number()
              .min(0, 'must be seconds, 0 or more')
              .max(7 * 24 * 3600, 'must be at most a week'),
          )
          .min(1)
          .max(50),
      )
      .default([0, 5, 300, 1800, 7200, 18000, 36000, 36000]),
    WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
    WEBHOOK_POLL_MS: z.coerce.number().int().min(10).default(1_000),
    WEBHOOK_DISABLE_AFTER_HOURS: z.coerce
      .number()
      .min(0)
      .default(5 * 24),
    WEBHOOK_DELIVERY_RETENTION_DAYS: z.coerce.number().min(0).default(30),
    PENDING_RECHECK_SECONDS: z.coerce.number().int().min(1).max(3600).default(30),
    UPSTREAM_MAX_IN_FLIGHT: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').max(100_000).default(10),
  })
  .superRefine((env, ctx) => {
    if (env.VIDEO_STORE === 's3' && env.S3_BUCKET === undefined) {
      ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'is required when VIDEO_STORE=s3' });
    }
    // Without it, callback and video URLs would silently point at localhost, which the upstream cannot reach.
    if (env.COMETAPI_KEY !== undefined && env.PUBLIC_BASE_URL === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['PUBLIC_BASE_URL'],
        message: 'is required when COMETAPI_KEY is set (how the upstream reaches callbacks)',
      });
    }
  });

/** Where finished videos are copied: each kind with the settings it needs, and only those. */
export type VideoStoreConfig =
  | { kind: 'none' }
  | { kind: 'local'; dir: string }
  | { kind: 's3'; bucket: string; region: string | null; endpoint: string | null; forcePathStyle: boolean };

export type PriceTable = { STD: number; PRO: number; STD_VIDEO: number; PRO_VIDEO: number };

/** Kling's own units per second for O1 (reference §5): 720p/1080p, and with a video input. */
const DEFAULT_PRICES: PriceTable = { STD: 0.6, PRO: 0.8, STD_VIDEO: 0.9, PRO_VIDEO: 1.2 };

export type Config = {
  port: number;
  host: string;
  databaseUrl: string | null;
  dataDir: string;
  cometApiKey: string | null;
  cometApiBaseUrl: string;
  /** Absent means "derive from the port actually bound" (port 0 in tests). */
  publicBaseUrl: string | null;
  webhookSecret: string | null;
  adminApiKey: string | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  role: 'all' | 'api' | 'worker';
  videoStore: VideoStoreConfig;
  /**
   * Whether the gateway may fetch result videos from loopback/private addresses. Unset, it is
   * allowed only with the built-in simulator (no COMETAPI_KEY), whose results are on loopback.
   */
  allowPrivateUrls: boolean;
  archive: { maxBytes: number; timeoutMs: number; maxAttempts: number };
  /** How long a stored video's signed (or presigned) URL stays valid. */
  videoUrlTtlSeconds: number;
  corsOrigins: string[] | null;
  taskDeadlineMinutes: number;
  shutdownTimeoutMs: number;
  /** Units per output second by mode, and with a video input. */
  prices: PriceTable;
  /** Pause of the reconciler between ticks when nothing was due. */
  reconcilerIntervalMs: number;
  /** When the reconciler first looks at a task whose create has not been answered (crash safety net). */
  pendingRecheckSeconds: number;
  /** Default per-tenant rates (0 = off); a tenant's own values override them. */
  rateLimits: { requestsPerSecond: number; createsPerMinute: number };
  maxRequestBytes: number;
  ws: { maxPayloadBytes: number; connectionInitTimeoutMs: number; keepaliveMs: number };
  /** 0 = no cap. */
  maxSubscriptions: { perConnection: number; perTenant: number };
  queryLimits: QueryLimits;
  persistedOperationsFile: string | null;
  /** Trace GraphQL operations through the global OpenTelemetry tracer provider. */
  otelTracing: boolean;
  /** How often each instance reads the change log without a wake-up, and how long the log keeps changes. */
  changeLog: { pollMs: number; retentionSeconds: number };
  /** How long a client may take to send a whole request (headers and body) before it is cut off. */
  requestTimeoutMs: number;
  /** When set, the bearer /metrics requires. */
  metricsToken: string | null;
  /** Request-body bytes being read at once across all /graphql requests of the instance (503 beyond). */
  maxInflightBodyBytes: number;
  /**
   * Outbound webhooks: the seconds before each attempt (the first counted from the event, the
   * others from the attempt before), the request timeout, how long an endpoint may fail before it
   * is disabled, how long finished deliveries are kept, and how often the jobs look without a wake-up.
   */
  webhooks: { retryScheduleSeconds: number[]; timeoutMs: number; disableAfterSeconds: number; retentionSeconds: number; pollMs: number };
  /** How long a resolved API key is trusted before the database is asked again (0 = always ask). */
  authCacheSeconds: number;
  /** Tasks kept accepted-and-unfinished at the upstream at once, across all instances. */
  upstreamMaxInFlight: number;
};

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function videoStoreConfig(e: z.infer<typeof environmentModel>): VideoStoreConfig {
  switch (e.VIDEO_STORE) {
    case 'none':
      return { kind: 'none' };
    case 'local':
      return { kind: 'local', dir: resolve(e.DATA_DIR, 'videos') };
    case 's3':
      return {
        kind: 's3',
        // Present: the model refuses VIDEO_STORE=s3 without it.
        bucket: e.S3_BUCKET ?? '',
        region: e.S3_REGION ?? null,
        endpoint: e.S3_ENDPOINT ?? null,
        forcePathStyle: e.S3_FORCE_PATH_STYLE,
      };
  }
}

/** Parses the whole environment at once so that every bad variable is reported together. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty variable means "unset": `FOO= npm start` should not be a validation error.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = environmentModel.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.') || 'environment';
      const value = typeof issue.path[0] === 'string' ? present[issue.path[0]] : undefined;
      const shown = value === undefined || /KEY|SECRET/.test(name) ? '' : ` (got "${value}")`;
      return `${name}: ${issue.message}${shown}`;
    });
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL ?? null,
    dataDir: e.DATA_DIR,
    cometApiKey: e.COMETAPI_KEY ?? null,
    cometApiBaseUrl: e.COMETAPI_BASE_URL,
    publicBaseUrl: e.PUBLIC_BASE_URL ?? null,
    webhookSecret: e.WEBHOOK_SECRET ?? null,
    adminApiKey: e.ADMIN_API_KEY ?? null,
    logLevel: e.LOG_LEVEL,
    role: e.ROLE,
    videoStore: videoStoreConfig(e),
    allowPrivateUrls: e.ALLOW_PRIVATE_URLS ?? e.COMETAPI_KEY === undefined,
    archive: { maxBytes: e.ARCHIVE_MAX_BYTES, timeoutMs: e.ARCHIVE_TIMEOUT_MS, maxAttempts: e.ARCHIVE_MAX_ATTEMPTS },
    videoUrlTtlSeconds: e.VIDEO_URL_TTL_SECONDS,
    corsOrigins: e.CORS_ORIGINS ?? null,
    taskDeadlineMinutes: e.TASK_DEADLINE_MINUTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    reconcilerIntervalMs: e.RECONCILER_INTERVAL_MS,
    pendingRecheckSeconds: e.PENDING_RECHECK_SECONDS,
    rateLimits: { requestsPerSecond: e.RATE_LIMIT_REQUESTS_PER_SECOND, createsPerMinute: e.RATE_LIMIT_CREATES_PER_MINUTE },
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    ws: {
      maxPayloadBytes: e.WS_MAX_PAYLOAD_BYTES,
      connectionInitTimeoutMs: e.WS_CONNECTION_INIT_TIMEOUT_MS,
      keepaliveMs: e.WS_KEEPALIVE_MS,
    },
    maxSubscriptions: { perConnection: e.MAX_SUBSCRIPTIONS_PER_CONNECTION, perTenant: e.MAX_SUBSCRIPTIONS_PER_TENANT },
    queryLimits: {
      depth: e.QUERY_MAX_DEPTH,
      aliases: e.QUERY_MAX_ALIASES,
      tokens: e.QUERY_MAX_TOKENS,
      directives: e.QUERY_MAX_DIRECTIVES,
      cost: e.QUERY_MAX_COST,
      length: e.QUERY_MAX_LENGTH,
    },
    persistedOperationsFile: e.PERSISTED_OPERATIONS_FILE ?? null,
    otelTracing: e.OTEL_TRACING,
    authCacheSeconds: e.AUTH_CACHE_SECONDS,
    upstreamMaxInFlight: e.UPSTREAM_MAX_IN_FLIGHT,
    metricsToken: e.METRICS_TOKEN ?? null,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    changeLog: { pollMs: e.CHANGE_LOG_POLL_MS, retentionSeconds: Math.round(e.CHANGE_LOG_RETENTION_HOURS * 3600) },
    maxInflightBodyBytes: e.MAX_INFLIGHT_BODY_BYTES ?? 2 * e.MAX_REQUEST_BYTES,
    prices: e.PRICE_TABLE ?? DEFAULT_PRICES,
    webhooks: {
      retryScheduleSeconds: e.WEBHOOK_RETRY_SCHEDULE,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      disableAfterSeconds: Math.round(e.WEBHOOK_DISABLE_AFTER_HOURS * 3600),
      retentionSeconds: Math.round(e.WEBHOOK_DELIVERY_RETENTION_DAYS * 86_400),
      pollMs: e.WEBHOOK_POLL_MS,
    },
  };
}
