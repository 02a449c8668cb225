import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const PREFIX = 'omni_gateway_';
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Values read at scrape time from the database and the process. */
export type MetricSources = {
  tasksByStatus(): Promise<Record<string, number>>;
  activeSubscriptions(): number;
  /** Seconds the oldest due task has been waiting for the reconciler (0 when none is due). */
  reconcilerLagSeconds(): Promise<number>;
};

/**
 * One registry per gateway instance (not prom-client's global one), so that several instances in
 * one process (tests, benchmarks) keep separate figures.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: PREFIX });
  const registers = [registry];
  const httpDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'HTTP requests by route, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const graphqlDuration = new Histogram({
    name: `${PREFIX}graphql_operation_duration_seconds`,
    help: 'GraphQL operations by type, root field and outcome (subscriptions: until the stream is set up).',
    labelNames: ['type', 'field', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const upstreamDuration = new Histogram({
    name: `${PREFIX}upstream_call_duration_seconds`,
    help: 'Calls to the Kling upstream by operation and outcome.',
    labelNames: ['op', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const webhooks = new Counter({
    name: `${PREFIX}webhooks_total`,
    help: 'Upstream callbacks received, by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });
  const reconcilerChecks = new Counter({
    name: `${PREFIX}reconciler_checks_total`,
    help: 'Tasks handled by the reconciler, by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });
  const archiveJobs = new Counter({
    name: `${PREFIX}archive_jobs_total`,
    help: 'Video archive attempts, by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });
  const rateLimited = new Counter({
    name: `${PREFIX}rate_limited_total`,
    help: 'Requests refused by a per-tenant rate limit, by kind.',
    labelNames: ['kind'] as const,
    registers,
  });
  let sources: MetricSources | null = null;
  new Gauge({
    name: `${PREFIX}tasks`,
    help: 'Tasks by status (all tenants).',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      if (sources === null) return;
      const counts = await sources.tasksByStatus();
      for (const status of ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED']) this.set({ status }, counts[status] ?? 0);
    },
  });
  new Gauge({
    name: `${PREFIX}active_subscriptions`,
    help: 'Live subscriptions on this instance (WebSocket and SSE).',
    registers,
    collect() {
      if (sources !== null) this.set(sources.activeSubscriptions());
    },
  });
  new Gauge({
    name: `${PREFIX}reconciler_lag_seconds`,
    help: 'How long the oldest due task has waited for the reconciler.',
    registers,
    async collect() {
      if (sources !== null) this.set(await sources.reconcilerLagSeconds());
    },
  });

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
    webhook(outcome: string) {
      webhooks.inc({ outcome });
    },
    reconcilerCheck(outcome: string) {
      reconcilerChecks.inc({ outcome });
    },
    archiveJob(outcome: string) {
      archiveJobs.inc({ outcome });
    },
    rateLimited(kind: 'request' | 'create') {
      rateLimited.inc({ kind });
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
