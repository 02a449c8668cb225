import { createApp } from '../../src/app.ts';
import type { App } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Config } from '../../src/config.ts';
import { createKlingClient } from '../../src/kling/client.ts';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import type { Archiver } from '../../src/archive/archiver.ts';
import type { Reconciler } from '../../src/tasks/reconciler.ts';
import { readPersistedOperations } from '../../src/graphql/persisted-operations.ts';
import { createLogger } from '../../src/logger.ts';
import type { Logger } from '../../src/logger.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { connectPostgres } from '../../src/db/database.ts';
import { createTestDatabase } from './database.ts';
import type { TestDatabase } from './database.ts';
import type { Clock } from '../../src/clock.ts';
import type { HostResolver } from '../../src/webhooks/outbound-address.ts';

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export type UpstreamRequest = { method: string; path: string; body: Record<string, unknown> | null };

export type GraphQLResponse<T = Record<string, unknown>> = {
  status: number;
  body: { data?: T | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
};

export type TestGateway = {
  url: string;
  app: App;
  config: Config;
  database: TestDatabase;
  simulator: Simulator;
  simulatorUrl: string;
  /** The instance's reconciler (fails the test if this instance has none, i.e. ROLE=api). */
  reconciler(): Reconciler;
  /** The instance's archiver (fails the test if it has none). */
  archiver(): Archiver;
  /** Every HTTP request the gateway's upstream client sent, in order. */
  upstreamRequests: UpstreamRequest[];
  /** POSTs an operation; `token` null sends no Authorization header. */
  graphql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string | null,
  ): Promise<GraphQLResponse<T>>;
  stop(): Promise<void>;
};

export type GatewayOptions = {
  env?: Record<string, string>;
  /** Simulator step delays; small by default so that tasks finish within a test. */
  delays?: { processingMs: number; finishMs: number };
  /** Size of the simulator's result videos. */
  videoBytes?: number;
  /** Client tuning, e.g. a short timeout for fault tests. */
  client?: { timeoutMs?: number; maxAttempts?: number };
  /** Share another gateway's database (PostgreSQL) instead of creating a fresh one. */
  databaseUrl?: string;
  /** A logger of the test's own, e.g. to read what the gateway logs. */
  logger?: Logger;
  /** The gateway's clock (e.g. a manual one, so that a test decides when time passes). */
  clock?: Clock;
  /** Share another gateway's simulator instead of starting one. */
  simulator?: { instance: Simulator; url: string };
  /** The simulator's account-wide concurrency limit (1303 beyond it); unset: none. */
  simulatorConcurrencyLimit?: number;
  /** How outbound webhook hosts resolve (a test changes the answer to check the delivery-time address rule). */
  webhookResolver?: HostResolver;
};

/** A gateway on port 0 with a fresh database and its own upstream simulator on loopback. */
export async function startGateway(options: GatewayOptions = {}): Promise<TestGateway> {
  const database: TestDatabase =
    options.databaseUrl === undefined
      ? await createTestDatabase()
      : Object.assign(connectPostgres(options.databaseUrl), { url: options.databaseUrl, drop: async () => {} });
  const ownsSimulator = options.simulator === undefined;
  const simulator =
    options.simulator?.instance ??
    createSimulator({
      delays: options.delays ?? { processingMs: 50, finishMs: 150 },
      ...(options.videoBytes === undefined ? {} : { videoBytes: options.videoBytes }),
      ...(options.simulatorConcurrencyLimit === undefined ? {} : { concurrencyLimit: options.simulatorConcurrencyLimit }),
    });
  const simulatorUrl = options.simulator?.url ?? (await simulator.listen(0, '127.0.0.1')).url;
  const upstreamRequests: UpstreamRequest[] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    upstreamRequests.push({
      method: init?.method ?? 'GET',
      path: url.pathname,
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : null,
    });
    return fetch(input, init);
  };
  const metrics = createMetrics();
  const upstream = createKlingClient({
    onCall: metrics.upstreamCall,
    fetch: recordingFetch,
    baseUrl: simulatorUrl,
    apiKey: 'test-upstream-key',
    timeoutMs: options.client?.timeoutMs ?? 5_000,
    maxAttempts: options.client?.maxAttempts ?? 3,
    backoff: { baseMs: 10, maxMs: 50 },
  });
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_API_KEY: ADMIN_KEY,
    LOG_LEVEL: 'silent',
    ALLOW_PRIVATE_URLS: 'true',
    RECONCILER_INTERVAL_MS: '50',
    // Archiving bumps versions after SUCCEEDED; the archive tests switch it on with their own DATA_DIR.
    VIDEO_STORE: 'none',
    // Functional tests drive many requests; the rate-limit tests switch limits on explicitly.
    RATE_LIMIT_REQUESTS_PER_SECOND: '0',
    RATE_LIMIT_CREATES_PER_MINUTE: '0',
    // Tests hold many tasks in flight at a simulator whose tasks may never finish; each create is
    // sent in its request unless a test sets a budget of its own (the queue: test/scheduling).
    UPSTREAM_MAX_IN_FLIGHT: '1000',
    ...options.env,
  });
  const app = await createApp({
    config,
    database,
    logger: options.logger ?? createLogger(config.logLevel),
    upstream,
    metrics,
    persistedOperations: config.persistedOperationsFile === null ? null : readPersistedOperations(config.persistedOperationsFile),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.webhookResolver === undefined ? {} : { webhookResolver: options.webhookResolver }),
  });
  const { url } = await app.start();
  return {
    url,
    app,
    config,
    database,
    simulator,
    simulatorUrl,
    upstreamRequests,
    reconciler() {
      if (app.reconciler === null) throw new Error('this gateway runs no reconciler');
      return app.reconciler;
    },
    archiver() {
      if (app.archiver === null) throw new Error('this gateway runs no archiver');
      return app.archiver;
    },
    async graphql(query, variables, token = ADMIN_KEY) {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify({ query, variables }),
      });
      const text = await response.text();
      try {
        return { status: response.status, body: JSON.parse(text) };
      } catch {
        throw new Error(`non-JSON answer (${response.status}) to ${query}:\n${text}`);
      }
    },
    async stop() {
      await app.stop();
      if (ownsSimulator) await simulator.close();
      if (options.databaseUrl === undefined) await database.drop();
      else await database.close();
    },
  };
}

/** Fails with the operation and the whole answer, so a broken assertion explains itself. */
export function expectData<T>(response: GraphQLResponse<T>, query = ''): T {
  if (response.status !== 200 || response.body.errors !== undefined || !response.body.data) {
    throw new Error(`expected data for ${query}\ngot ${response.status}: ${JSON.stringify(response.body, null, 2)}`);
  }
  return response.body.data;
}
