import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { png } from '../tasks/image-fixtures.ts';
import { POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { callbackBody, callbackUrlOf, createTask, createTenant, postJson, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';

describe('metrics and logs', () => {
  let gateway: TestGateway;
  const lines: string[] = [];
  beforeAll(async () => {
    gateway = await startGateway({
      delays: { processingMs: 600_000, finishMs: 1_200_000 },
      // The background reconciler ticks once at start, then waits: the test ticks it by hand.
      env: { LOG_LEVEL: 'info', RECONCILER_INTERVAL_MS: '600000' },
      logger: createLogger('info', { write: (line: string) => void lines.push(line) }),
    });
    gateway.simulator.settings.callbacks = false;
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('/metrics exposes the listed series after a task life cycle', async () => {
    const tenant = await createTenant(gateway, 'Measured');
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { status } }', { id: task.id });
      await watch.collector.untilCount(1);
      const live = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(live).toMatch(/^omni_gateway_active_subscriptions 1$/m);
      const succeeded = callbackBody(task, 'succeed');
      gateway.simulator.finish(succeeded); // the upstream agrees: a final callback is confirmed by a read
      await postJson(callbackUrlOf(gateway, task.id), succeeded);
      await watch.collector.untilDone();
    } finally {
      await client.dispose();
    }
    const waiting = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await queryRows(
      gateway.database.db,
      sql`update omni_tasks set next_check_at = now() - interval '3 seconds' where id = ${taskUuid(waiting.id)}`,
    );
    expect(await (await fetch(`${gateway.url}/metrics`)).text()).toMatch(/^omni_gateway_reconciler_lag_seconds [3-9]/m);
    expect(await gateway.reconciler().tick()).toBe(1);
    const response = await fetch(`${gateway.url}/metrics`);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    for (const series of [
      /^omni_gateway_http_request_duration_seconds_count\{route="\/graphql",method="POST",status="200"\} \d+$/m,
      /^omni_gateway_graphql_operation_duration_seconds_count\{type="mutation",field="createOmniVideo",outcome="ok"\} \d+$/m,
      /^omni_gateway_graphql_operation_duration_seconds_count\{type="subscription",field="omniTaskUpdated",outcome="ok"\} 1$/m,
      /^omni_gateway_upstream_call_duration_seconds_count\{op="create",outcome="ok"\} \d+$/m,
      /^omni_gateway_webhooks_total\{outcome="applied"\} 1$/m,
      /^omni_gateway_tasks\{status="SUCCEEDED"\} 1$/m,
      /^omni_gateway_tasks\{status="SUBMITTED"\} 1$/m,
      /^omni_gateway_rate_limited_total|^# TYPE omni_gateway_rate_limited_total counter$/m,
      /^omni_gateway_active_subscriptions 0$/m,
      /^omni_gateway_reconciler_lag_seconds 0$/m,
      /^omni_gateway_reconciler_checks_total\{outcome="unchanged"\} 1$/m,
      /^# TYPE omni_gateway_archive_jobs_total counter$/m,
      /^omni_gateway_process_resident_memory_bytes \d+/m,
    ]) {
      expect(text).toMatch(series);
    }
    // Routes are labels, never raw paths: no task id or token leaks into a series.
    expect(text).not.toContain(taskUuid(task.id));
  });

  it('/metrics gives the event loop delay since the previous scrape: min, max, mean and percentiles', async () => {
    const gauge = (text: string, stat: string) => {
      const line = new RegExp(`^omni_gateway_nodejs_eventloop_lag_${stat}_seconds (\\S+)$`, 'm').exec(text);
      return Number(line?.[1]);
    };
    await fetch(`${gateway.url}/metrics`); // starts an interval
    // The gateway runs in this process: holding its event loop delays it by as much. Node measures
    // the delay between two ticks of its sampling timer, and the first tick after a scrape only
    // starts the count; so hold the loop, let the overdue tick run (a timer due now runs after it),
    // then hold it again: that second hold is measured.
    const hold = (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until) {}
    };
    const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
    hold(250);
    await tick();
    hold(250);
    await tick();
    const held = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(gauge(held, 'max')).toBeGreaterThanOrEqual(0.2);
    expect(gauge(held, 'p99')).toBeGreaterThanOrEqual(0.2);
    for (const stat of ['min', 'mean', 'p50', 'p90']) {
      expect(gauge(held, stat)).toBeGreaterThan(0);
      expect(gauge(held, stat)).toBeLessThanOrEqual(gauge(held, 'max'));
    }
    expect(held).toMatch(/^omni_gateway_nodejs_eventloop_lag_seconds \S+$/m);
    expect(held).not.toContain('eventloop_lag_stddev');
    // The next scrape covers only the time since this one, without the held 250 ms.
    const next = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(gauge(next, 'max')).toBeLessThan(gauge(held, 'max'));
  });

  it('a create logs the tenant id and never the API key or base64 image data', async () => {
    const tenant = await createTenant(gateway, 'Logged');
    const base64 = png(640, 480).toString('base64');
    const task = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, referenceImages: [{ base64 }] });
    const created = lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => entry.msg === 'omni task created' && entry.taskId === taskUuid(task.id));
    expect(created).toMatchObject({ tenantId: taskUuid(tenant.id), requestId: expect.any(String), mode: 'STD', images: 1 });
    const all = lines.join('\n');
    expect(all).not.toContain(tenant.apiKey);
    expect(all).not.toContain(base64.slice(0, 64));
    expect(all).not.toContain('test-admin-key');
  });
});

describe('/metrics with METRICS_TOKEN', () => {
  it("requires the token as its bearer, and its task counts are the table's, kept by the database", async () => {
    const token = 'metrics-token-0123456789';
    const gateway = await startGateway({ env: { METRICS_TOKEN: token }, delays: { processingMs: 600_000, finishMs: 1_200_000 } });
    try {
      for (const authorization of [undefined, 'Bearer wrong-token-0123456789', `Basic ${token}`]) {
        const refused = await fetch(`${gateway.url}/metrics`, { headers: authorization === undefined ? {} : { authorization } });
        expect(refused.status).toBe(401);
        expect(await refused.text()).not.toContain('omni_gateway_');
      }
      const tenant = await createTenant(gateway, 'Counted');
      const tasks = await Promise.all([1, 2, 3].map(() => createTask(gateway, tenant, TEXT_TO_VIDEO)));
      const finals = [callbackBody(tasks[0]!, 'succeed'), callbackBody(tasks[1]!, 'failed', { task_status_msg: 'no' })];
      // The upstream agrees (a final callback is confirmed by a read), quietly: the test posts the callbacks.
      gateway.simulator.settings.callbacks = false;
      for (const body of finals) gateway.simulator.finish(body);
      await postJson(callbackUrlOf(gateway, tasks[0]!.id), finals[0]);
      await postJson(callbackUrlOf(gateway, tasks[1]!.id), finals[1]);
      const scrape = async () => {
        const response = await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
        expect(response.status).toBe(200);
        return response.text();
      };
      const actual = await queryRows<{ status: string; count: number }>(
        gateway.database.db,
        sql`select status, count(*)::int as count from omni_tasks group by status`,
      );
      expect(actual.map((row) => [row.status, Number(row.count)]).sort()).toEqual([
        ['FAILED', 1],
        ['SUBMITTED', 1],
        ['SUCCEEDED', 1],
      ]);
      const text = await scrape();
      for (const status of ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED']) {
        const expected = Number(actual.find((row) => row.status === status)?.count ?? 0);
        expect(text).toMatch(new RegExp(`^omni_gateway_tasks\\{status="${status}"\\} ${expected}$`, 'm'));
      }
      // Deleting a tenant deletes its tasks, and the counts follow.
      await queryRows(gateway.database.db, sql`delete from tenants where id = ${taskUuid(tenant.id)}`);
      expect(await scrape()).toMatch(/^omni_gateway_tasks\{status="SUCCEEDED"\} 0$/m);
    } finally {
      await gateway.stop();
    }
  });
});

describe.skipIf(serverUrl === null)('roles', POSTGRES_ONLY, () => {
  it('ROLE=api alone does not poll; with a ROLE=worker beside it tasks finish; the worker serves no API', async () => {
    const api = await startGateway({ delays: { processingMs: 20, finishMs: 40 }, env: { ROLE: 'api' } });
    api.simulator.settings.callbacks = false;
    let worker: TestGateway | null = null;
    try {
      expect(api.app.reconciler).toBeNull();
      const tenant = await createTenant(api, 'Roles');
      const task = await createTask(api, tenant, TEXT_TO_VIDEO);
      await queryRows(api.database.db, sql`update omni_tasks set next_check_at = now() where id = ${taskUuid(task.id)}`);
      const client = wsClient(api.url, tenant.apiKey);
      try {
        const watch = await subscribeWs(client, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { status } }', { id: task.id });
        await watch.collector.untilCount(1);
        worker = await startGateway({
          databaseUrl: api.database.url!,
          simulator: { instance: api.simulator, url: api.simulatorUrl },
          env: { ROLE: 'worker' },
        });
        await watch.collector.untilDone(15_000);
        expect(watch.collector.items.at(-1)?.data?.omniTaskUpdated.status).toBe('SUCCEEDED');
      } finally {
        await client.dispose();
      }
      // Only the worker asked the upstream; the api instance never polled.
      expect(api.upstreamRequests.filter((request) => request.method === 'GET')).toEqual([]);
      expect(worker.upstreamRequests.filter((request) => request.method === 'GET').length).toBeGreaterThan(0);
      expect((await fetch(`${worker.url}/graphql`, { method: 'POST' })).status).toBe(404);
      expect((await fetch(`${worker.url}/readyz`)).status).toBe(200);
      expect((await fetch(`${worker.url}/metrics`)).status).toBe(200);
    } finally {
      await worker?.stop();
      await api.stop();
    }
  });
});
