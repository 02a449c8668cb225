import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import {
  callbackBody,
  callbackUrlOf,
  createTask,
  createTenant,
  createVideo,
  postJson,
  TEXT_TO_VIDEO,
  taskUuid,
} from '../support/fixtures.ts';
import type { TaskView } from '../support/fixtures.ts';
import { ADMIN_KEY, expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

let gateway: TestGateway;

beforeAll(async () => {
  // A quiet upstream: tasks finish only when a test posts their callbacks.
  gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 } });
  gateway.simulator.settings.callbacks = false;
});
afterAll(async () => {
  await gateway?.stop();
});

async function finish(task: TaskView, status: 'succeed' | 'failed', duration = '5'): Promise<void> {
  const body = callbackBody(
    task,
    status,
    status === 'succeed' ? { task_result: { videos: [{ id: 'v', url: 'https://cdn.example/v.mp4', duration }] } } : {},
  );
  // A final callback is confirmed by an upstream read: the upstream finished the task as the body says.
  expect(gateway.simulator.finish(body)).toBe(true);
  const response = await postJson(callbackUrlOf(gateway, task.id), body);
  expect(response.status).toBe(200);
}

async function usageEventsOf(task: TaskView): Promise<{ kind: string; video_seconds: number; units: number }[]> {
  return queryRows(gateway.database.db, sql`select kind, video_seconds, units from usage_events where task_id = ${taskUuid(task.id)}`);
}

const USAGE = `{ viewer { usage { succeededTasks failedTasks videoSeconds units byMode { mode tasks videoSeconds units } } } }`;

describe('quotas', () => {
  it('twenty concurrent 5-second creates against a 50-second monthly limit admit exactly 10', async () => {
    const tenant = await createTenant(gateway, 'Budget', { monthlyVideoSecondsLimit: 50 });
    const results = await Promise.all(Array.from({ length: 20 }, () => createVideo(gateway, tenant, TEXT_TO_VIDEO)));
    const byType = results.reduce<Record<string, number>>((counts, result) => {
      counts[result.__typename] = (counts[result.__typename] ?? 0) + 1;
      return counts;
    }, {});
    expect(byType).toEqual({ CreateOmniVideoSuccess: 10, QuotaExceededError: 10 });
    const refusal = results.find((result) => result.__typename === 'QuotaExceededError');
    expect(refusal?.message).toMatch(/Monthly video seconds limit reached: 50 s per month, 50 s used or reserved.*0 s left/);
    const rows = await queryRows<{ count: number }>(
      gateway.database.db,
      sql`select count(*)::int as count from omni_tasks t join tenants n on n.id = t.tenant_id where n.name = 'Budget'`,
    );
    expect(Number(rows[0]?.count)).toBe(10);
  });

  it('a failed task releases its reserved seconds; a succeeded one keeps them as used', async () => {
    const tenant = await createTenant(gateway, 'Release', { monthlyVideoSecondsLimit: 10 });
    const first = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const second = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    expect((await createVideo(gateway, tenant, TEXT_TO_VIDEO)).__typename).toBe('QuotaExceededError');
    await finish(first, 'failed');
    const third = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await finish(second, 'succeed');
    await finish(third, 'succeed');
    const refused = await createVideo(gateway, tenant, TEXT_TO_VIDEO);
    expect(refused).toMatchObject({ __typename: 'QuotaExceededError', message: expect.stringContaining('10 s used or reserved') });
  });

  it('a concurrency limit of 2 refuses a third in-flight task and admits it again once one finishes', async () => {
    const tenant = await createTenant(gateway, 'Parallel', { maxConcurrentTasks: 2 });
    const first = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const refused = await createVideo(gateway, tenant, TEXT_TO_VIDEO);
    expect(refused).toMatchObject({
      __typename: 'QuotaExceededError',
      message: expect.stringContaining('Concurrent task limit reached: 2 of 2 tasks are in flight'),
    });
    await finish(first, 'succeed');
    expect((await createVideo(gateway, tenant, TEXT_TO_VIDEO)).__typename).toBe('CreateOmniVideoSuccess');
  });

  it('updateTenantLimits takes effect at once, and null removes a limit', async () => {
    const tenant = await createTenant(gateway, 'Adjusted', { maxConcurrentTasks: 1 });
    await createTask(gateway, tenant, TEXT_TO_VIDEO);
    expect((await createVideo(gateway, tenant, TEXT_TO_VIDEO)).__typename).toBe('QuotaExceededError');
    const update = 'mutation ($input: UpdateTenantLimitsInput!) { updateTenantLimits(input: $input) { maxConcurrentTasks } }';
    expect(expectData(await gateway.graphql(update, { input: { tenantId: tenant.id, maxConcurrentTasks: null } }))).toEqual({
      updateTenantLimits: { maxConcurrentTasks: null },
    });
    expect((await createVideo(gateway, tenant, TEXT_TO_VIDEO)).__typename).toBe('CreateOmniVideoSuccess');
  });
});

describe('the usage ledger', () => {
  it('replaying every callback of a finished task and polling it again leaves exactly one usage event', async () => {
    const tenant = await createTenant(gateway, 'Replay');
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const url = callbackUrlOf(gateway, task.id);
    const bodies = [callbackBody(task, 'submitted'), callbackBody(task, 'processing'), callbackBody(task, 'succeed')];
    expect(gateway.simulator.finish(bodies[2])).toBe(true);
    for (let round = 0; round < 3; round += 1) {
      for (const body of bodies) expect((await postJson(url, body)).status).toBe(200);
    }
    // Concurrent duplicates of the final callback, and a refresh that asks the upstream again.
    await Promise.all(Array.from({ length: 10 }, () => postJson(url, bodies[2])));
    await gateway.graphql('mutation ($id: ID!) { refreshOmniTask(id: $id) { status } }', { id: task.id }, tenant.apiKey);
    expect(await usageEventsOf(task)).toEqual([{ kind: 'video', video_seconds: 5, units: 3 }]); // STD: 5 s × 0.6
  });

  it('viewer.usage matches a hand-computed mix of STD/PRO, with and without a video input, and failed tasks', async () => {
    const tenant = await createTenant(gateway, 'Mixed');
    const video = [{ url: 'https://videos.example/in.mp4', referType: 'FEATURE' }];
    const stdText = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, mode: 'STD', durationSeconds: 5 });
    const proText = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, mode: 'PRO', durationSeconds: 10 });
    const stdVideo = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, mode: 'STD', referenceVideos: video });
    const proEdit = await createTask(gateway, tenant, {
      prompt: 'Make <<<video_1>>> rainy',
      mode: 'PRO',
      referenceVideos: [{ url: 'https://videos.example/in.mp4', referType: 'BASE' }],
    });
    const failed = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, mode: 'PRO' });
    const pending = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, mode: 'PRO' });
    await finish(stdText, 'succeed', '5'); //   5 s × 0.6 = 3
    await finish(proText, 'succeed', '10'); // 10 s × 0.8 = 8
    await finish(stdVideo, 'succeed', '5'); //  5 s × 0.9 = 4.5
    await finish(proEdit, 'succeed', '7.5'); // 7.5 s × 1.2 = 9 (the result's duration, not a requested one)
    await finish(failed, 'failed');
    void pending; // in flight: not in the report
    const usage = expectData(await gateway.graphql<{ viewer: { usage: unknown } }>(USAGE, {}, tenant.apiKey)).viewer.usage;
    expect(usage).toEqual({
      succeededTasks: 4,
      failedTasks: 1,
      videoSeconds: 27.5,
      units: 24.5,
      byMode: [
        { mode: 'STD', tasks: 2, videoSeconds: 10, units: 7.5 },
        { mode: 'PRO', tasks: 2, videoSeconds: 17.5, units: 17 },
      ],
    });
    // The admin reads the same through tenants; an empty past range reads zero.
    const adminView = expectData(
      await gateway.graphql<{ tenants: { edges: { node: { name: string; usage: { units: number } } }[] } }>(
        '{ tenants(first: 100) { edges { node { name usage { units } } } } }',
        {},
        ADMIN_KEY,
      ),
    ).tenants.edges.find((edge) => edge.node.name === 'Mixed');
    expect(adminView?.node.usage.units).toBe(24.5);
    const past = expectData(
      await gateway.graphql<{ viewer: { usage: { succeededTasks: number } } }>(
        '{ viewer { usage(from: "2020-01-01T00:00:00Z", to: "2020-02-01T00:00:00Z") { succeededTasks } } }',
        {},
        tenant.apiKey,
      ),
    );
    expect(past.viewer.usage.succeededTasks).toBe(0);
  });

  it('refuses a DateTime without its offset or naming a day or time that does not exist', async () => {
    const tenant = await createTenant(gateway, 'Strict dates');
    for (const from of [
      '2026-01-31T12:00:00',
      '2026-02-30T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T00:00Z',
    ]) {
      const response = await gateway.graphql(`{ viewer { usage(from: "${from}") { units } } }`, {}, tenant.apiKey);
      expect(response.body.errors?.[0]?.extensions?.code, from).toBe('BAD_USER_INPUT');
    }
    for (const from of ['2024-02-29T00:00:00Z', '2026-01-31T12:00:00.5+09:00']) {
      expect(expectData(await gateway.graphql(`{ viewer { usage(from: "${from}") { units } } }`, {}, tenant.apiKey)), from).toBeDefined();
    }
  });

  it('exports the ledger as CSV with stable event ids, a tenant seeing only its own events', async () => {
    const a = await createTenant(gateway, 'Export A');
    const b = await createTenant(gateway, 'Export B');
    const taskA = await createTask(gateway, a, TEXT_TO_VIDEO);
    const taskB = await createTask(gateway, b, TEXT_TO_VIDEO);
    await finish(taskA, 'succeed');
    await finish(taskB, 'failed');
    const download = async (key: string, query = '') => {
      const response = await fetch(`${gateway.url}/usage/events.csv${query}`, { headers: { authorization: `Bearer ${key}` } });
      return { status: response.status, type: response.headers.get('content-type'), text: await response.text() };
    };
    const first = await download(a.apiKey);
    expect(first.status).toBe(200);
    expect(first.type).toContain('text/csv');
    const lines = first.text.trim().split('\n');
    expect(lines[0]).toBe(
      'event_id,tenant_id,task_id,kind,mode,has_video_input,video_seconds,seconds_source,rate,units,upstream_units,occurred_at',
    );
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(`,${a.id},${taskA.id},video,STD,false,5,result,0.6,3,4,`);
    expect((await download(a.apiKey)).text).toBe(first.text); // stable ids
    expect((await download(a.apiKey, `?tenantId=${encodeURIComponent(b.id)}`)).status).toBe(403);
    const adminB = await download(ADMIN_KEY, `?tenantId=${encodeURIComponent(b.id)}`);
    expect(
      adminB.text
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => line.split(',')[3]),
    ).toEqual(['failure']);
    expect((await fetch(`${gateway.url}/usage/events.csv`)).status).toBe(401);
    expect((await download(a.apiKey, '?from=yesterday')).status).toBe(400);
  });
});
