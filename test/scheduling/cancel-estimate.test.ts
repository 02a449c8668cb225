import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createTenant, taskUuid } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import { graphqlAt } from '../reliability/support.ts';
import { createTask, input } from './support.ts';

const CANCEL = `mutation ($id: ID!) {
  cancelOmniTask(id: $id) {
    __typename
    ... on CancelOmniTaskSuccess { task { id status statusMessage queuePosition units upstreamUnits } }
    ... on Error { message }
  }
}`;

const ESTIMATE = `query ($input: CreateOmniVideoInput!) {
  estimateOmniVideo(input: $input) {
    __typename
    ... on OmniVideoEstimate { units videoSeconds remainingMonthlySeconds inFlightTasks maxConcurrentTasks queueAhead estimatedStartSeconds }
    ... on InvalidInputError { message issues { path message } }
  }
}`;

const TASK = 'query ($id: ID!) { omniTask(id: $id) { id status units upstreamUnits queuePosition } }';

/** A gateway whose single upstream slot stays taken until the test finishes the task holding it. */
describe('cancelOmniTask', () => {
  let gateway: TestGateway;
  let a: TestTenant;
  let b: TestTenant;

  beforeAll(async () => {
    gateway = await startGateway({ delays: { processingMs: 10, finishMs: 600_000 }, env: { UPSTREAM_MAX_IN_FLIGHT: '1' } });
    a = await createTenant(gateway, 'Canceller', { maxConcurrentTasks: 2 });
    b = await createTenant(gateway, 'Other');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  const cancel = async (apiKey: string, id: string) =>
    (await graphqlAt(gateway.url, apiKey, CANCEL, { id })).body?.data?.cancelOmniTask as Record<string, any>;

  it('a waiting task ends CANCELLED at no charge: never sent, no usage, quota released, subscribers told; a sent one cannot be', async () => {
    const running = await createTask(gateway.url, a.apiKey, input('holds the only slot'));
    // Sent upstream: SUBMITTED, or PROCESSING when the simulator's callback (10 ms on) came first.
    expect(['SUBMITTED', 'PROCESSING']).toContain(running.status);
    const waiting = await createTask(gateway.url, a.apiKey, input('waits'));
    expect(waiting).toMatchObject({ status: 'PENDING', queuePosition: 1 });
    // maxConcurrentTasks 2: the waiting task counts.
    const refused = await graphqlAt(
      gateway.url,
      a.apiKey,
      'mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { __typename } }',
      {
        input: input('third'),
      },
    );
    expect(refused.body?.data?.createOmniVideo.__typename).toBe('QuotaExceededError');

    const client = wsClient(gateway.url, a.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { id status } }', { id: waiting.id });
      const result = await cancel(a.apiKey, waiting.id);
      expect(result).toMatchObject({
        __typename: 'CancelOmniTaskSuccess',
        task: { id: waiting.id, status: 'CANCELLED', queuePosition: null, units: 0, upstreamUnits: null },
      });
      await watch.collector.untilDone(5_000);
      expect(watch.collector.items.map((item) => item.data?.omniTaskUpdated.status)).toEqual(['PENDING', 'CANCELLED']);
    } finally {
      await client.dispose();
    }
    // Cancelling again answers the same; the quota is free again.
    expect(await cancel(a.apiKey, waiting.id)).toMatchObject({ __typename: 'CancelOmniTaskSuccess', task: { status: 'CANCELLED' } });
    const admitted = await createTask(gateway.url, a.apiKey, input('admitted after the cancel'));
    expect(admitted.status).toBe('PENDING');

    // The sent task cannot be cancelled; B cannot touch A's task at all, exactly like an unknown id.
    expect(await cancel(a.apiKey, running.id)).toMatchObject({ __typename: 'CancelNotPossibleError' });
    const foreign = await cancel(b.apiKey, admitted.id);
    const unknown = await cancel(
      b.apiKey,
      admitted.id.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')),
    );
    expect(foreign).toMatchObject({ __typename: 'TaskNotFoundError' });
    expect(foreign).toEqual(unknown);
    const stillWaiting = (await graphqlAt(gateway.url, a.apiKey, TASK, { id: admitted.id })).body?.data?.omniTask;
    expect(stillWaiting).toMatchObject({ status: 'PENDING', queuePosition: 1 });

    // Free the slot: the queued task goes; the cancelled one never reaches the upstream.
    const [row] = await queryRows<{ upstream_task_id: string }>(
      gateway.database.db,
      sql`select upstream_task_id from omni_tasks where id = ${taskUuid(running.id)}`,
    );
    const watcher = wsClient(gateway.url, a.apiKey);
    try {
      const next = await subscribeWs(watcher, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { id status } }', { id: admitted.id });
      gateway.simulator.finish({ task_id: row!.upstream_task_id });
      await next.collector.until(
        (c) => c.items.some((item) => item.data?.omniTaskUpdated.status !== 'PENDING'),
        'the queued task sent',
        10_000,
      );
    } finally {
      await watcher.dispose();
    }
    const waitingId = taskUuid(waiting.id);
    expect(
      gateway.upstreamRequests.filter((request) => request.body?.external_task_id === waitingId || request.path.endsWith(waitingId)),
    ).toEqual([]);
    expect(gateway.simulator.stats.byExternalTaskId[waitingId]).toBeUndefined();
    const usage = await queryRows<{ n: number }>(
      gateway.database.db,
      sql`select count(*)::int as n from usage_events where task_id = ${waitingId}`,
    );
    expect(Number(usage[0]?.n)).toBe(0);
  }, 30_000);

  it('cancelAfterSeconds cancels a task still waiting by then, without an upstream call', async () => {
    // The slot is taken by the task the previous test let through.
    const task = await createTask(gateway.url, b.apiKey, input('impatient', { cancelAfterSeconds: 1 }));
    expect(task.status).toBe('PENDING');
    const client = wsClient(gateway.url, b.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { id status statusMessage } }', {
        id: task.id,
      });
      await watch.collector.untilDone(10_000);
      expect(watch.collector.items.at(-1)?.data?.omniTaskUpdated).toMatchObject({
        status: 'CANCELLED',
        statusMessage: expect.stringMatching(/cancelAfterSeconds/),
      });
    } finally {
      await client.dispose();
    }
    expect(gateway.simulator.stats.byExternalTaskId[taskUuid(task.id)]).toBeUndefined();
    const invalid = await graphqlAt(
      gateway.url,
      b.apiKey,
      'mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { __typename ... on InvalidInputError { issues { path } } } }',
      {
        input: input('bad', { cancelAfterSeconds: 0 }),
      },
    );
    expect(invalid.body?.data?.createOmniVideo).toEqual({
      __typename: 'InvalidInputError',
      issues: [{ path: ['input', 'cancelAfterSeconds'] }],
    });
  }, 30_000);
});

/** Hand-computed at the default price table (units per second): STD 0.6, PRO 0.8, STD with a video 0.9, PRO with a video 1.2. */
const PRICED = [
  { name: 'STD 5 s', extra: { mode: 'STD', durationSeconds: 5 }, units: 3, seconds: 5 },
  { name: 'PRO 10 s', extra: { mode: 'PRO', durationSeconds: 10 }, units: 8, seconds: 10 },
  {
    name: 'STD 5 s with a reference video',
    extra: { mode: 'STD', durationSeconds: 5, referenceVideos: [{ url: 'https://videos.example/ref.mp4', referType: 'FEATURE' }] },
    units: 4.5,
    seconds: 5,
  },
  {
    name: 'PRO 10 s with a reference video',
    extra: { mode: 'PRO', durationSeconds: 10, referenceVideos: [{ url: 'https://videos.example/ref.mp4', referType: 'FEATURE' }] },
    units: 12,
    seconds: 10,
  },
];

describe('estimateOmniVideo', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;

  beforeAll(async () => {
    gateway = await startGateway({ delays: { processingMs: 10, finishMs: 30 } });
    tenant = await createTenant(gateway, 'Estimator', { monthlyVideoSecondsLimit: 100, maxConcurrentTasks: 5 });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('prices a request as its usage event will count it, stores nothing and calls nothing upstream', async () => {
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription { omniTaskUpdated { id status } }', {});
      let used = 0;
      for (const row of PRICED) {
        const before = gateway.upstreamRequests.length;
        const answer = await graphqlAt(gateway.url, tenant.apiKey, ESTIMATE, { input: input(row.name, row.extra) });
        const estimate = answer.body?.data?.estimateOmniVideo;
        expect(estimate, `${row.name}: ${answer.text}`).toEqual({
          __typename: 'OmniVideoEstimate',
          units: row.units,
          videoSeconds: row.seconds,
          remainingMonthlySeconds: 100 - used,
          inFlightTasks: 0,
          maxConcurrentTasks: 5,
          queueAhead: 0,
          estimatedStartSeconds: 0,
        });
        expect(gateway.upstreamRequests.length, 'no upstream call').toBe(before);
        const task = await createTask(gateway.url, tenant.apiKey, input(row.name, row.extra));
        await watch.collector.until(
          (c) => c.items.some((item) => item.data?.omniTaskUpdated.id === task.id && item.data.omniTaskUpdated.status === 'SUCCEEDED'),
          `${row.name} succeeded`,
        );
        const [event] = await queryRows<{ units: number; video_seconds: number; upstream_units: string }>(
          gateway.database.db,
          sql`select units, video_seconds, upstream_units from usage_events where task_id = ${taskUuid(task.id)}`,
        );
        expect(event, row.name).toMatchObject({ units: row.units, video_seconds: row.seconds });
        const read = (await graphqlAt(gateway.url, tenant.apiKey, TASK, { id: task.id })).body?.data?.omniTask;
        // The task shows the same cost, and the upstream's own deduction (the simulator uses the same table).
        expect(read, row.name).toMatchObject({
          status: 'SUCCEEDED',
          units: row.units,
          upstreamUnits: Number(event!.upstream_units),
          queuePosition: null,
        });
        used += row.seconds;
      }
      const [count] = await queryRows<{ n: number }>(gateway.database.db, sql`select count(*)::int as n from omni_tasks`);
      expect(Number(count?.n), 'only the created tasks exist').toBe(PRICED.length);
    } finally {
      await client.dispose();
    }
  }, 30_000);

  it('validates like createOmniVideo', async () => {
    const answer = await graphqlAt(gateway.url, tenant.apiKey, ESTIMATE, { input: input('seven seconds', { durationSeconds: 7 }) });
    expect(answer.body?.data?.estimateOmniVideo).toMatchObject({
      __typename: 'InvalidInputError',
      issues: [{ path: ['input', 'durationSeconds'] }],
    });
  });
});
