import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { REFRESH_MIN_INTERVAL_MS } from '../../src/tasks/upstream-reads.ts';
import { createTask, createTenant, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { TaskView, TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { GraphQLResponse, TestGateway } from '../support/gateway.ts';

/*
 * refreshOmniTask asks the upstream, so its reads are rationed: concurrent refreshes of one task
 * share one read, a refresh soon after the task's last read answers from the stored state, and
 * every refresh counts as a request against the tenant's rate.
 */

const ALIASES = 30;
const REFRESH_ALL = `mutation ($id: ID!) { ${Array.from({ length: ALIASES }, (_, i) => `r${i}: refreshOmniTask(id: $id) { id status version }`).join(' ')} }`;
const REFRESH = 'mutation ($id: ID!) { refreshOmniTask(id: $id) { id status version } }';

type Refreshed = { id: string; status: string; version: number } | null;

function upstreamReads(gateway: TestGateway, task: TaskView): number {
  return gateway.upstreamRequests.filter((request) => request.method === 'GET' && request.path.endsWith(`/${task.upstreamTaskId}`)).length;
}

describe('refreshOmniTask rationing', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    // A quiet upstream: nothing moves on while the tests refresh, and the reconciler stays idle.
    gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 }, env: { RECONCILER_INTERVAL_MS: '600000' } });
    gateway.simulator.settings.callbacks = false;
    tenant = await createTenant(gateway, 'Refresher');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('90 refreshes of one task within a second cause at most 3 upstream reads.', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const before = upstreamReads(gateway, task);
    const started = performance.now();
    const answers = await Promise.all(
      [1, 2, 3].map(() => gateway.graphql<Record<string, Refreshed>>(REFRESH_ALL, { id: task.id }, tenant.apiKey)),
    );
    const elapsedMs = performance.now() - started;
    const refreshed = answers.flatMap((answer) => Object.values(expectData(answer, REFRESH_ALL)));
    expect(refreshed).toHaveLength(90);
    expect(refreshed).toEqual(Array(90).fill({ id: task.id, status: 'SUBMITTED', version: 2 }));
    // The burst fits in one rationing window (a second, give or take a loaded test machine).
    expect(elapsedMs).toBeLessThan(REFRESH_MIN_INTERVAL_MS);
    expect(upstreamReads(gateway, task) - before).toBeGreaterThanOrEqual(1);
    expect(upstreamReads(gateway, task) - before).toBeLessThanOrEqual(3);
  });

  it('concurrent refreshes of one task share one upstream read', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    // The upstream answers slowly, so that every refresh arrives while the first read is in flight.
    gateway.simulator.faults.push({ op: 'get', kind: 'slow', ms: 1_000 });
    try {
      const before = upstreamReads(gateway, task);
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => gateway.graphql<{ refreshOmniTask: Refreshed }>(REFRESH, { id: task.id }, tenant.apiKey)),
      );
      expect(answers.map((answer) => expectData(answer, REFRESH).refreshOmniTask)).toEqual(
        Array(10).fill({ id: task.id, status: 'SUBMITTED', version: 2 }),
      );
      expect(upstreamReads(gateway, task) - before).toBe(1);
    } finally {
      gateway.simulator.faults.length = 0;
    }
  });

  it('a refresh soon after the last read answers from the stored state; after the interval it asks again', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const refresh = async () =>
      expectData(await gateway.graphql<{ refreshOmniTask: Refreshed }>(REFRESH, { id: task.id }, tenant.apiKey), REFRESH);
    const before = upstreamReads(gateway, task);
    await refresh();
    expect(upstreamReads(gateway, task)).toBe(before + 1);
    await refresh();
    expect(upstreamReads(gateway, task)).toBe(before + 1);
    // The upstream moves on; the stored state is what a refresh within the interval answers.
    gateway.simulator.finish({ task_id: task.upstreamTaskId });
    expect((await refresh()).refreshOmniTask).toMatchObject({ status: 'SUBMITTED' });
    expect(upstreamReads(gateway, task)).toBe(before + 1);
    // The last read is older than the interval (moved back instead of waiting): the next refresh asks.
    await queryRows(
      gateway.database.db,
      sql`update task_events set created_at = created_at - make_interval(secs => ${(2 * REFRESH_MIN_INTERVAL_MS) / 1000})
          where task_id = ${taskUuid(task.id)}`,
    );
    expect((await refresh()).refreshOmniTask).toMatchObject({ status: 'SUCCEEDED', version: 3 });
    expect(upstreamReads(gateway, task)).toBe(before + 2);
  });
});

describe("refreshes and the tenant's request rate", () => {
  it('each refresh field counts as one request: 30 aliases in one request are 30 requests', async () => {
    const gateway = await startGateway({
      delays: { processingMs: 600_000, finishMs: 1_200_000 },
      env: { RATE_LIMIT_REQUESTS_PER_SECOND: '5', RATE_LIMIT_CREATES_PER_MINUTE: '0', RECONCILER_INTERVAL_MS: '600000' },
    });
    try {
      const tenant = await createTenant(gateway, 'Rated');
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const answer: GraphQLResponse<Record<string, Refreshed>> = await gateway.graphql(REFRESH_ALL, { id: task.id }, tenant.apiKey);
      // 5 requests per second, bursts of 10: far fewer than 30 refreshes go through, the rest are refused.
      const refused = (answer.body.errors ?? []).filter((error) => error.extensions?.code === 'RATE_LIMITED');
      const served = Object.values(answer.body.data ?? {}).filter((value) => value !== null);
      expect(refused.length, JSON.stringify(answer.body)).toBeGreaterThanOrEqual(ALIASES - 15);
      expect(served.length + refused.length, JSON.stringify(answer.body)).toBe(ALIASES);
      expect(served.length).toBeGreaterThanOrEqual(1);
      expect(answer.status).toBe(429);
    } finally {
      await gateway.stop();
    }
  });
});
