// The dispatch scenario: how long a task waiting for an upstream slot takes to reach the upstream
// once a slot frees, with 1,000 tasks of 10 tenants waiting, against the same with 10 tasks of one
// tenant waiting. It runs a gateway of its own in this process (UPSTREAM_MAX_IN_FLIGHT=10, a fresh
// database, an in-process simulator whose tasks run until the benchmark finishes them), since the
// main gateway runs with the budget out of the way of the other scenarios.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { queryRows } from '../src/db/database.ts';
import { createKlingClient } from '../src/kling/client.ts';
import { createLogger } from '../src/logger.ts';
import { createSimulator } from '../src/simulator/server.ts';
import { createBenchDatabase, temporaryDirectory } from './support/database.ts';
import { percentiles } from './support/stats.ts';
import type { Percentiles } from './support/stats.ts';

const ADMIN = 'bench-dispatch-admin-0123456789';
const BUDGET = 10;
const CREATE = `mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { __typename } }`;
const INPUT = { prompt: 'A queued benchmark task', mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 };

async function graphql(url: string, key: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data?: Record<string, any> };
}

/** The upstream: the simulator behind a layer that notes when each create arrives. */
async function startUpstream() {
  const simulator = createSimulator({ delays: { processingMs: 3_600_000, finishMs: 3_600_000 } });
  const arrivals: ((at: number) => void)[] = [];
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/kling/v1/videos/omni-video') {
      const at = performance.now();
      for (const wake of arrivals.splice(0)) wake(at);
    }
    simulator.handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    simulator,
    nextCreate: () => new Promise<number>((resolve) => arrivals.push(resolve)),
    async close() {
      await simulator.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const PAGE = 'query { omniTasks(first: 50) { edges { node { id status } } } }';
const PAGE_WITH_PLACES = 'query { omniTasks(first: 50) { edges { node { id status queuePosition } } } }';

/** ms per request for `samples` sequential requests of `query` (after two unmeasured ones). */
async function timeQuery(url: string, key: string, query: string, samples: number): Promise<Percentiles> {
  const times: number[] = [];
  for (let i = 0; i < samples + 2; i += 1) {
    const start = performance.now();
    const answer = await graphql(url, key, query);
    if (answer.data?.omniTasks === undefined) throw new Error(`page failed: ${JSON.stringify(answer)}`);
    if (i >= 2) times.push(performance.now() - start);
  }
  return percentiles(times);
}

export type DispatchFigures = {
  /** ms from a freed slot to the next create upstream. */
  freedSlot: Percentiles;
  /** ms for a page of 50 of one tenant's waiting tasks, without and with their queue positions. */
  page: Percentiles;
  pageWithPositions: Percentiles;
};

/**
 * Fills the budget, queues `tenants × perTenant` tasks, times a page of the first tenant's waiting
 * tasks with and without queue positions, then frees one slot at a time: ms from the freeing to
 * the next create upstream.
 */
export async function measureDispatch(shape: { tenants: number; perTenant: number; samples: number }): Promise<DispatchFigures> {
  const dir = temporaryDirectory();
  const database = await createBenchDatabase(process.env.DATABASE_URL || null, dir.path);
  const upstream = await startUpstream();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_API_KEY: ADMIN,
    LOG_LEVEL: 'silent',
    VIDEO_STORE: 'none',
    ALLOW_PRIVATE_URLS: 'true',
    UPSTREAM_MAX_IN_FLIGHT: String(BUDGET),
    RATE_LIMIT_REQUESTS_PER_SECOND: '0',
    RATE_LIMIT_CREATES_PER_MINUTE: '0',
    ...database.gatewayEnv,
  });
  const client = createKlingClient({ baseUrl: upstream.url, apiKey: 'bench' });
  const app = await createApp({ config, database: database.database, logger: createLogger('silent'), upstream: client });
  try {
    const { url } = await app.start();
    const keys: string[] = [];
    for (let i = 0; i < shape.tenants; i += 1) {
      const created = await graphql(url, ADMIN, `mutation { createTenant(input: { name: "dispatch-${i}" }) { apiKey } }`);
      keys.push(created.data?.createTenant.apiKey as string);
    }
    for (let i = 0; i < BUDGET; i += 1) await graphql(url, keys[0]!, CREATE, { input: INPUT });
    // Queued round-robin over the tenants, eight creates at a time.
    const queued = Array.from({ length: shape.tenants * shape.perTenant }, (_, i) => keys[i % shape.tenants]!);
    for (let i = 0; i < queued.length; i += 8) {
      await Promise.all(queued.slice(i, i + 8).map((key) => graphql(url, key, CREATE, { input: INPUT })));
    }
    const page = await timeQuery(url, keys[0]!, PAGE, shape.samples);
    const pageWithPositions = await timeQuery(url, keys[0]!, PAGE_WITH_PLACES, shape.samples);
    const samples: number[] = [];
    for (let i = 0; i < shape.samples; i += 1) {
      const [running] = await queryRows<{ upstream_task_id: string }>(
        database.database.db,
        sql`select upstream_task_id from omni_tasks where status = 'SUBMITTED' order by submitted_at limit 1`,
      );
      if (running === undefined) throw new Error('no task holds a slot');
      const arrived = upstream.nextCreate();
      const freedAt = performance.now();
      upstream.simulator.finish({ task_id: running.upstream_task_id });
      samples.push((await arrived) - freedAt);
      // The dispatched task is recorded SUBMITTED before the next round picks a running task.
      const [{ n } = { n: 0 }] = await queryRows<{ n: number }>(
        database.database.db,
        sql`select count(*)::int as n from omni_tasks where status = 'PENDING' and queued_at is null`,
      );
      if (Number(n) > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { freedSlot: percentiles(samples), page, pageWithPositions };
  } finally {
    await app.stop();
    await upstream.close();
    await database.dispose();
    dir.remove();
  }
}
