import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const PREFIX = 'omni_gateway_';
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const TASK_STATUSES = ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
/** A task may wait in the upstream queue from milliseconds to its deadline (30 min by default). */
const QUEUE_WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800];

/** Values read at scrape time from the database and the process. */
export type MetricSources = {
  tasksByStatus(): Promise<Record<string, number>>;
  activeSubscriptions(): number;
  /** Seconds the oldest due task has been waiting for the reconciler (0 when none is due). */
  reconcilerLagSeconds(): Promise<number>;
  /** The upstream budget (all instances): the limit in force, slots held, tasks waiting for one. */
  upstreamBudget?(): Promise<{ limit: number; inFlight: number; queued: number }>;
};

function histogram(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
  return new Histogram({ name: `${PREFIX}${name}`, help, labelNames, buckets: LATENCY_BUCKETS, registers: [registry] });
}

function counter(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
  return new Counter({ name: `${PREFIX}${name}`, help, labelNames, registers: [registry] });
}

/** Gauges read when scraped; they report nothing until the sources are set. */
function budgetGauges(registry: Registry, sources: () => MetricSources | null): void {
  const gauges = [
    ['upstream_queue_length', 'Tasks waiting for an upstream slot (all instances).', 'queued'],
    ['upstream_in_flight', 'Tasks holding an upstream slot: sent, or being sent, and not final (all instances).', 'inFlight'],
    [
      'upstream_budget',
      'The upstream budget in force: UPSTREAM_MAX_IN_FLIGHT, or less while the upstream refuses for load (AIMD).',
      'limit',
    ],
  ] as const;
  // The three gauges are collected together, per scrape: they share one read of the budget.
  let reading: Promise<{ limit: number; inFlight: number; queued: number }> | null = null;
  const readOnce = (read: () => Promise<{ limit: number; inFlight: number; queued: number }>) => {
    reading ??= read().finally(() => {
      reading = null;
    });
    return reading;
  };
  for (const [name, help, key] of gauges) {
    new Gauge({
      name: `${PREFIX}${name}`,
      help,
      registers: [registry],
      async collect() {
        const read = sources()?.upstreamBudget;
        if (read !== undefined) this.set((await readOnce(read))[key]);
      },
    });
  }
}

function scrapeGauges(registry: Registry, sources: () => MetricSources | null): void {
  const registers = [registry];
  budgetGauges(registry, sources);
  new Gauge({
    name: `${PREFIX}tasks`,
    help: 'Tasks by status (all tenants).',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      const from = sources();
      if (from === null) return;
      const counts = await from.tasksByStatus();
      for (const status of TASK_STATUSES) this.set({ status }, counts[status] ?? 0);
    },
  });
  new Gauge({
    name: `${PREFIX}active_subscriptions`,
    help: 'Live subscriptions on this instance (WebSocket and SSE).',
    registers,
    collect() {
      const from = sources();
      if (from !== null) this.set(from.activeSubscriptions());
    },
  });
  new Gauge({
    name: `${PREFIX}reconciler_lag_seconds`,
    help: 'How long the oldest due task has waited for the reconciler.',
    registers,
    async collect() {
      const from = sources();
      if (from !== null) this.set(await from.reconcilerLagSeconds());
    },
  });
}

/** prom-client's event-loop series, replaced by `eventLoopDelay` below. */
const EVENT_LOOP_SERIES = ['lag', 'lag_min', 'lag_max', 'lag_mean', 'lag_stddev', 'lag_p50', 'lag_p90', 'lag_p99'];

/**
 * The event-loop series of prom-client's default metrics, but for `nodejs_eventloop_lag_stddev_seconds`.
 * Node works the standard deviation out by walking the whole delay histogram, twice: about 0.2 ms
 * of every scrape, a sixth of it, for a figure the percentiles already describe.
 */
function eventLoopDelay(registry: Registry): void {
  for (const series of EVENT_LOOP_SERIES) registry.removeSingleMetric(`${PREFIX}nodejs_eventloop_${series}_seconds`);
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const stats = [
    ['min', 'The minimum recorded event loop delay.', () => delay.min],
    ['max', 'The maximum recorded event loop delay.', () => delay.max],
    ['mean', 'The mean of the recorded event loop delays.', () => delay.mean],
    ['p50', 'The 50th percentile of the recorded event loop delays.', () => delay.percentile(50)],
    ['p90', 'The 90th percentile of the recorded event loop delays.', () => delay.percentile(90)],
    ['p99', 'The 99th percentile of the recorded event loop delays.', () => delay.percentile(99)],
  ] as const;
  // Registered first, so that its collect sets the others before they are written out (as in prom-client).
  new Gauge({
    name: `${PREFIX}nodejs_eventloop_lag_seconds`,
    help: 'Lag of event loop in seconds.',
    registers: [registry],
    collect() {
      const start = process.hrtime.bigint();
      setImmediate(() => this.set(Number(process.hrtime.bigint() - start) / 1e9));
      // No sample since the previous scrape (Node's min is then the largest integer): zeros.
      const sampled = delay.count > 0;
      for (const [gauge, value] of gauges) gauge.set(sampled ? value() / 1e9 : 0);
      // The delays since the previous scrape.
      delay.reset();
    },
  });
  const gauges = stats.map(
    ([stat, help, value]) =>
      [new Gauge({ name: `${PREFIX}nodejs_eventloop_lag_${stat}_seconds`, help, registers: [registry] }), value] as const,
  );
}

/**
 * One registry per gateway instance (not prom-client's global one), so that several instances in
 * one process (tests, benchmarks) keep separate figures.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: PREFIX });
  eventLoopDelay(registry);
  const httpDuration = histogram(registry, 'http_request_duration_seconds', 'HTTP requests by route, method and status.', [
    'route',
    'method',
    'status',
  ]);
  const graphqlDuration = histogram(
    registry,
    'graphql_operation_duration_seconds',
    'GraphQL operations by type, root field and outcome (subscriptions: until the stream is set up).',
    ['type', 'field', 'outcome'],
  );
  const upstreamDuration = histogram(registry, 'upstream_call_duration_seconds', 'Calls to the Kling upstream by operation and outcome.', [
    'op',
    'outcome',
  ]);
  const webhooks = counter(registry, 'webhooks_total', 'Upstream callbacks received, by outcome.', ['outcome']);
  const reconcilerChecks = counter(registry, 'reconciler_checks_total', 'Tasks handled by the reconciler, by outcome.', ['outcome']);
  const archiveJobs = counter(registry, 'archive_jobs_total', 'Video archive attempts, by outcome.', ['outcome']);
  const rateLimited = counter(registry, 'rate_limited_total', 'Requests refused by a per-tenant rate limit, by kind.', ['kind']);
  const queueWait = new Histogram({
    name: `${PREFIX}upstream_queue_wait_seconds`,
    help: 'How long dispatched tasks waited for an upstream slot (this instance dispatched them).',
    buckets: QUEUE_WAIT_BUCKETS,
    registers: [registry],
  });
  const throttled = counter(
    registry,
    'upstream_throttled_total',
    'Creates the upstream refused for load: reason concurrency (1303) or rate (1302/429).',
    ['reason'],
  );
  let sources: MetricSources | null = null;
  scrapeGauges(registry, () => sources);

  return {
    registry,
    setSources(next: MetricSources) {
      sources = next;
    },
    http(route: string, method: string, status: number, seconds: number) {
      httpDuration.observe({ route, method, status: String(status) }, seconds);
    },
    graphql(type: string, field: string, outcome: 'ok' | 'error', seconds: number) {
      graphqlDuration.observe({ type, field, outcome }, seconds);
    },
    /** Shaped as the kling client's `onCall` option. */
    upstreamCall: (event: { op: string; outcome: string; durationMs: number }) => {
      upstreamDuration.observe({ op: event.op, outcome: event.outcome }, event.durationMs / 1000);
    },
    webhook: (outcome: string) => webhooks.inc({ outcome }),
    reconcilerCheck: (outcome: string) => reconcilerChecks.inc({ outcome }),
    archiveJob: (outcome: string) => archiveJobs.inc({ outcome }),
    rateLimited: (kind: 'request' | 'create') => rateLimited.inc({ kind }),
    queueWait: (waitedMs: number) => queueWait.observe(waitedMs / 1000),
    upstreamThrottled: (reason: 'concurrency' | 'rate') => throttled.inc({ reason }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
