import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { omniTasks } from '../../src/db/schema.ts';
import { createMeteringService } from '../../src/metering/metering.ts';
import { manualClock } from '../../src/clock.ts';
import { InvalidInputError } from '../../src/errors.ts';
import type { TaskRow, Transition } from '../../src/tasks/state.ts';
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
import type { CreateResult, TaskView } from '../support/fixtures.ts';
import { POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { waitFor } from '../reliability/support.ts';
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

describe('quota edges with odd durations and limits', () => {
  /** A request that may take any duration from 3 to 10 s (text-only ones take 5 or 10). */
  const withElement = (durationSeconds: number) => ({ ...TEXT_TO_VIDEO, durationSeconds, elements: [{ elementId: '42' }] });

  it('10 s reserved of 12: a 5 s request is refused (2 s left) and so is a 3 s one', async () => {
    const tenant = await createTenant(gateway, 'Edge10', { monthlyVideoSecondsLimit: 12 });
    await createTask(gateway, tenant, withElement(10));
    expect(await createVideo(gateway, tenant, TEXT_TO_VIDEO)).toEqual({
      __typename: 'QuotaExceededError',
      message:
        'Monthly video seconds limit reached: 12 s per month, 10 s used or reserved by tasks in flight, ' +
        'this request needs 5 s; 2 s left this month.',
    });
    expect((await createVideo(gateway, tenant, withElement(3))).__typename).toBe('QuotaExceededError');
  });

  it('7 s reserved of 12: a 5 s request is admitted (exactly the limit), then 3 s more is refused', async () => {
    const tenant = await createTenant(gateway, 'Edge7', { monthlyVideoSecondsLimit: 12 });
    await createTask(gateway, tenant, withElement(7));
    expect((await createVideo(gateway, tenant, TEXT_TO_VIDEO)).__typename).toBe('CreateOmniVideoSuccess');
    expect(await createVideo(gateway, tenant, withElement(3))).toMatchObject({
      __typename: 'QuotaExceededError',
      message: expect.stringContaining('12 s used or reserved by tasks in flight, this request needs 3 s; 0 s left'),
    });
  });

  it('seconds used by finished tasks count as their result says: 7 s of 12 admits 5 s; 10 s of 12 refuses it', async () => {
    const seven = await createTenant(gateway, 'Used7', { monthlyVideoSecondsLimit: 12 });
    // Asked for 5 s, delivered 7 s: the ledger's 7 s count, the reservation of 5 s is gone.
    await finish(await createTask(gateway, seven, TEXT_TO_VIDEO), 'succeed', '7');
    expect((await createVideo(gateway, seven, TEXT_TO_VIDEO)).__typename).toBe('CreateOmniVideoSuccess');
    expect((await createVideo(gateway, seven, withElement(3))).__typename).toBe('QuotaExceededError');

    const ten = await createTenant(gateway, 'Used10', { monthlyVideoSecondsLimit: 12 });
    await finish(await createTask(gateway, ten, TEXT_TO_VIDEO), 'succeed', '10');
    expect(await createVideo(gateway, ten, TEXT_TO_VIDEO)).toMatchObject({
      __typename: 'QuotaExceededError',
      message: expect.stringContaining('12 s per month, 10 s used or reserved by tasks in flight, this request needs 5 s; 2 s left'),
    });
    // Nor do 3 s fit in the 2 s left.
    expect((await createVideo(gateway, ten, withElement(3))).__typename).toBe('QuotaExceededError');
  });

  it('an edit of a base video (no duration) reserves the 10 s cap: 3 s more fit in 13, 3 s after that do not', async () => {
    const tenant = await createTenant(gateway, 'EditCap', { monthlyVideoSecondsLimit: 13 });
    const edit = await createTask(gateway, tenant, {
      prompt: 'Make it snow',
      mode: 'STD',
      referenceVideos: [{ url: 'https://videos.example/base.mp4', referType: 'BASE' }],
    });
    expect(edit.durationSeconds).toBeNull();
    expect((await createVideo(gateway, tenant, withElement(3))).__typename).toBe('CreateOmniVideoSuccess');
    expect(await createVideo(gateway, tenant, withElement(3))).toMatchObject({
      __typename: 'QuotaExceededError',
      message: expect.stringContaining('13 s used or reserved by tasks in flight, this request needs 3 s; 0 s left'),
    });
  });

  it('a concurrency limit of 3 admits a third task and refuses a fourth', async () => {
    const tenant = await createTenant(gateway, 'Three', { maxConcurrentTasks: 3 });
    for (let i = 0; i < 3; i += 1) await createTask(gateway, tenant, TEXT_TO_VIDEO);
    expect(await createVideo(gateway, tenant, TEXT_TO_VIDEO)).toEqual({
      __typename: 'QuotaExceededError',
      message: 'Concurrent task limit reached: 3 of 3 tasks are in flight; a new task is admitted once one of them finishes.',
    });
  });

  it('a retry with its idempotency key at the concurrency limit gets its own task back, not QuotaExceededError', async () => {
    const tenant = await createTenant(gateway, 'Retrier', { maxConcurrentTasks: 1 });
    const input = { ...TEXT_TO_VIDEO, idempotencyKey: 'at-the-limit' };
    const first = await createTask(gateway, tenant, input);
    const retry = await createVideo(gateway, tenant, input);
    expect(retry).toMatchObject({ __typename: 'CreateOmniVideoSuccess', task: { id: first.id } });
    // Another key is a new task, which the limit refuses.
    expect((await createVideo(gateway, tenant, { ...input, idempotencyKey: 'another' })).__typename).toBe('QuotaExceededError');
  });

  it.skipIf(serverUrl === null)(
    'two creates with one key, both queued behind the tenant lock at a limit of 1, both get the one task (PostgreSQL)',
    POSTGRES_ONLY,
    async () => {
      const tenant = await createTenant(gateway, 'Queued', { maxConcurrentTasks: 1 });
      const input = { ...TEXT_TO_VIDEO, idempotencyKey: 'queued' };
      // The test holds the tenant's row lock, so both creates pass their first look for the key
      // (nothing yet) and wait; the second to get the lock must find the first one's task under it.
      const holder = postgres(gateway.database.url ?? '', { max: 1, onnotice: () => {} });
      const observer = postgres(gateway.database.url ?? '', { max: 1, onnotice: () => {} });
      try {
        let pending: Promise<CreateResult[]> = Promise.resolve([]);
        await holder.begin(async (tx) => {
          await tx`select id from tenants where id = ${taskUuid(tenant.id)} for update`;
          pending = Promise.all([createVideo(gateway, tenant, input), createVideo(gateway, tenant, input)]);
          await waitFor('both creates to wait for the tenant lock', async () => {
            const [row] = await observer`select count(*)::int as n from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'`;
            return Number(row?.n) >= 2;
          });
        });
        const results = await pending;
        expect(results.map((result) => result.__typename)).toEqual(['CreateOmniVideoSuccess', 'CreateOmniVideoSuccess']);
        const ids = results.map((result) => (result.__typename === 'CreateOmniVideoSuccess' ? result.task.id : null));
        expect(ids[0]).toBe(ids[1]);
      } finally {
        await holder.end();
        await observer.end();
      }
    },
  );

  it('ten concurrent creates with one idempotency key under a limit of 1 all get the one task', async () => {
    const tenant = await createTenant(gateway, 'Crowd', { maxConcurrentTasks: 1 });
    const input = { ...TEXT_TO_VIDEO, idempotencyKey: 'crowd' };
    const results = await Promise.all(Array.from({ length: 10 }, () => createVideo(gateway, tenant, input)));
    expect(results.map((result) => result.__typename)).toEqual(results.map(() => 'CreateOmniVideoSuccess'));
    const ids = results.map((result) => (result.__typename === 'CreateOmniVideoSuccess' ? result.task.id : null));
    expect(new Set(ids).size).toBe(1);
  });
});

describe('the metering service', () => {
  it('counts the calendar month of its clock in UTC, across a year end, and refuses a range that ends before it starts', () => {
    const clock = manualClock(Date.UTC(2026, 11, 31, 23, 59, 59));
    const metering = createMeteringService({ db: gateway.database.db, prices: gateway.config.prices, clock });
    expect(metering.currentMonth()).toEqual({ from: new Date('2026-12-01T00:00:00Z'), to: new Date('2027-01-01T00:00:00Z') });
    expect(metering.usageRange({})).toEqual(metering.currentMonth());
    // From a given instant: up to now, not to the month's end.
    expect(metering.usageRange({ from: new Date('2026-06-01T00:00:00Z') })).toEqual({
      from: new Date('2026-06-01T00:00:00Z'),
      to: new Date(clock.now()),
    });
    expect(metering.usageRange({ to: new Date('2026-12-10T00:00:00Z') })).toEqual({
      from: new Date('2026-12-01T00:00:00Z'),
      to: new Date('2026-12-10T00:00:00Z'),
    });
    const same = new Date('2026-12-05T00:00:00Z');
    expect(() => metering.usageRange({ from: same, to: same })).toThrow(InvalidInputError);
    clock.set(Date.UTC(2027, 0, 1));
    expect(metering.currentMonth()).toEqual({ from: new Date('2027-01-01T00:00:00Z'), to: new Date('2027-02-01T00:00:00Z') });
  });

  it('meters a success by its result videos, else the requested duration, else the 10 s cap, at the rate of its mode and input', async () => {
    const tenant = await createTenant(gateway, 'Seconds');
    const metering = createMeteringService({ db: gateway.database.db, prices: gateway.config.prices });
    const cases: { input: Record<string, unknown>; durations: (number | null)[]; expected: Record<string, unknown> }[] = [
      { input: TEXT_TO_VIDEO, durations: [3, 4], expected: { video_seconds: 7, seconds_source: 'result', units: 4.2 } },
      { input: TEXT_TO_VIDEO, durations: [5, null], expected: { video_seconds: 5, seconds_source: 'requested', units: 3 } },
      {
        input: { ...TEXT_TO_VIDEO, mode: 'PRO', durationSeconds: 10 },
        durations: [0],
        expected: { video_seconds: 10, seconds_source: 'requested', units: 8 },
      },
      { input: { ...TEXT_TO_VIDEO, mode: 'PRO' }, durations: [], expected: { video_seconds: 5, seconds_source: 'requested', units: 4 } },
      {
        input: { prompt: 'Edit', mode: 'PRO', referenceVideos: [{ url: 'https://videos.example/base.mp4', referType: 'BASE' }] },
        durations: [],
        expected: { video_seconds: 10, seconds_source: 'assumed_max', units: 12 },
      },
      {
        input: { prompt: 'Edit', mode: 'STD', referenceVideos: [{ url: 'https://videos.example/base.mp4', referType: 'BASE' }] },
        durations: [6],
        expected: { video_seconds: 6, seconds_source: 'result', units: 5.4 },
      },
    ];
    for (const { input, durations, expected } of cases) {
      const view = await createTask(gateway, tenant, input);
      const [row] = await gateway.database.db
        .select()
        .from(omniTasks)
        .where(eq(omniTasks.id, taskUuid(view.id)));
      if (row === undefined) throw new Error('the task is not stored');
      const videos = durations.map((durationSeconds, i) => ({ id: `v${i}`, upstreamUrl: `https://cdn.example/${i}.mp4`, durationSeconds }));
      await gateway.database.db.transaction((tx) =>
        metering.recordUsage(tx, { ...row, status: 'SUCCEEDED', videos }, { status: 'SUCCEEDED', source: 'test', upstreamUnits: '9' }),
      );
      const rows = await queryRows(
        gateway.database.db,
        sql`select kind, video_seconds, seconds_source, units::float8 as units, upstream_units from usage_events where task_id = ${row.id}`,
      );
      expect(rows, JSON.stringify(input)).toEqual([{ kind: 'video', ...expected, upstream_units: '9' }]);
    }
  });
});

describe('the usage ledger', () => {
  it('recording a final state twice, one after the other and at once, leaves one row and counts it once', async () => {
    const tenant = await createTenant(gateway, 'Twice');
    const view = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const metering = createMeteringService({ db: gateway.database.db, prices: gateway.config.prices });
    const [row] = await gateway.database.db
      .select()
      .from(omniTasks)
      .where(eq(omniTasks.id, taskUuid(view.id)));
    if (row === undefined) throw new Error('the task is not stored');
    const record = (task: TaskRow, transition: Transition) =>
      gateway.database.db.transaction((tx) => metering.recordUsage(tx, task, transition));

    const failed = { ...row, status: 'FAILED' as const };
    await record(failed, { status: 'FAILED', source: 'test' });
    await record(failed, { status: 'FAILED', source: 'test' });
    expect(await usageEventsOf(view)).toEqual([{ kind: 'failure', video_seconds: 0, units: 0 }]);
    // The same row, not a new one in its place: an exported ledger's event ids stay valid.
    const failureId = async () =>
      (await queryRows<{ id: string }>(gateway.database.db, sql`select id from usage_events where task_id = ${row.id}`))[0]?.id;
    const firstId = await failureId();
    await record(failed, { status: 'FAILED', source: 'test' });
    expect(await failureId()).toBe(firstId);

    // The upstream finished it after all: the video replaces the failure, however often it is recorded.
    const succeeded = {
      ...row,
      status: 'SUCCEEDED' as const,
      videos: [{ id: 'v', upstreamUrl: 'https://cdn.example/v.mp4', durationSeconds: 5 }],
    };
    const transition: Transition = { status: 'SUCCEEDED', source: 'test', upstreamUnits: '4' };
    await record(succeeded, transition);
    await record(succeeded, transition);
    await Promise.all([record(succeeded, transition), record(succeeded, transition)]);
    expect(await usageEventsOf(view)).toEqual([{ kind: 'video', video_seconds: 5, units: 3 }]);
    expect(expectData(await gateway.graphql(USAGE, {}, tenant.apiKey))).toEqual({
      viewer: {
        usage: {
          succeededTasks: 1,
          failedTasks: 0,
          videoSeconds: 5,
          units: 3,
          byMode: [
            { mode: 'STD', tasks: 1, videoSeconds: 5, units: 3 },
            { mode: 'PRO', tasks: 0, videoSeconds: 0, units: 0 },
          ],
        },
      },
    });
  });

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

  it('refuses a range whose from is not before its to, saying so', async () => {
    const tenant = await createTenant(gateway, 'Reversed range');
    for (const range of [
      'from: "2026-03-02T00:00:00Z", to: "2026-03-01T00:00:00Z"',
      'from: "2026-03-01T00:00:00Z", to: "2026-03-01T00:00:00Z"',
    ]) {
      const response = await gateway.graphql(`{ viewer { usage(${range}) { units } } }`, {}, tenant.apiKey);
      expect(response.body.errors?.[0], range).toMatchObject({
        message: '"from" must be before "to".',
        extensions: { code: 'BAD_USER_INPUT' },
      });
    }
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
    // The admin without a tenantId: every tenant's events.
    const everyone = await download(ADMIN_KEY);
    expect(everyone.status).toBe(200);
    const tenantsSeen = new Set(
      everyone.text
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => line.split(',')[1]),
    );
    expect(tenantsSeen.has(a.id) && tenantsSeen.has(b.id)).toBe(true);
  });

  it('refuses an export it cannot answer with the reason: method, empty range, a tenant id that is not one', async () => {
    const tenant = await createTenant(gateway, 'Export checks');
    const url = `${gateway.url}/usage/events.csv`;
    const headers = { authorization: `Bearer ${tenant.apiKey}` };
    const posted = await fetch(url, { method: 'POST', headers });
    expect(posted.status).toBe(405);
    expect(posted.headers.get('allow')).toBe('GET');
    for (const range of ['?from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z', '?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z']) {
      const response = await fetch(`${url}${range}`, { headers });
      expect(response.status, range).toBe(400);
      expect(await response.json(), range).toEqual({ error: '"from" must be before "to"' });
    }
    const wide = await fetch(`${url}?from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00.001Z`, { headers });
    expect(wide.status).toBe(200);
    // The admin naming a tenant by an id of another type, or by no id at all.
    const taskTyped = Buffer.from(`OmniTask:${randomUUID()}`).toString('base64');
    for (const id of [encodeURIComponent(taskTyped), 'not-an-id']) {
      const response = await fetch(`${url}?tenantId=${id}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
      expect(response.status, id).toBe(400);
      expect(await response.json(), id).toEqual({ error: 'unknown tenantId' });
    }
  });
});
