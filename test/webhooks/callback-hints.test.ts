import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import {
  callbackBody,
  callbackUrlOf,
  createTask,
  createTenant,
  postJson,
  TASK_FIELDS,
  TEXT_TO_VIDEO,
  taskUuid,
} from '../support/fixtures.ts';
import type { TaskView, TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import { serverUrl } from '../support/database.ts';
import { waitFor } from '../reliability/support.ts';

/*
 * Callbacks are hints: whoever learns a callback URL can post to it, so a final status in a
 * callback is confirmed by an upstream read, and the status, videos and seconds recorded are the
 * upstream's. The simulator is the upstream here: tasks turn processing at once and finish only
 * when a test finishes them (simulator.finish), after which the simulator calls back for real.
 */

const WATCH = 'subscription ($id: ID) { omniTaskUpdated(id: $id) { status version } }';

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  gateway = await startGateway({
    delays: { processingMs: 50, finishMs: 600_000 },
    // The reconciler ticks by hand, so that every change here has a known cause.
    env: { RECONCILER_INTERVAL_MS: '600000' },
  });
  tenant = await createTenant(gateway, 'Hinted');
});
afterAll(async () => {
  await gateway?.stop();
});

async function read(task: TaskView): Promise<TaskView> {
  const query = `query ($id: ID!) { omniTask(id: $id) { ${TASK_FIELDS} } }`;
  return expectData(await gateway.graphql<{ omniTask: TaskView }>(query, { id: task.id }, tenant.apiKey), query).omniTask;
}

async function ledger(task: TaskView): Promise<{ kind: string; video_seconds: number; units: number }[]> {
  return queryRows(gateway.database.db, sql`select kind, video_seconds, units from usage_events where task_id = ${taskUuid(task.id)}`);
}

function upstreamReads(task: TaskView): number {
  return gateway.upstreamRequests.filter((request) => request.method === 'GET' && request.path.endsWith(`/${task.upstreamTaskId}`)).length;
}

/** A task the upstream is processing (its own callback said so), watched by a per-task subscription. */
async function processingTask(input: Record<string, unknown> = TEXT_TO_VIDEO) {
  const task = await createTask(gateway, tenant, input);
  const client = wsClient(gateway.url, tenant.apiKey);
  const watch = await subscribeWs(client, WATCH, { id: task.id });
  await watch.collector.until((c) => c.items.some((item) => item.data?.omniTaskUpdated.status === 'PROCESSING'), 'PROCESSING');
  return { task: await read(task), watch, client };
}

describe('a final callback is confirmed by the upstream before anything is recorded', () => {
  it("A forged final callback while the upstream still says processing leaves the task processing; the true final state arrives with the upstream's URL and duration", async () => {
    const { task, watch, client } = await processingTask({ ...TEXT_TO_VIDEO, durationSeconds: 10 });
    try {
      expect(task).toMatchObject({ status: 'PROCESSING', videos: [] });
      const url = callbackUrlOf(gateway, task.id);
      const forged = callbackBody(task, 'succeed', {
        task_result: { videos: [{ id: 'forged', url: 'https://attacker.example/forged.mp4', duration: '99' }] },
        final_unit_deduction: '79.2',
      });
      expect(await postJson(url, forged)).toEqual({ status: 200, body: { ok: true, changed: false } });
      expect(await read(task)).toEqual(task);
      expect(await ledger(task)).toEqual([]);
      // The forged body is kept for audit like every callback.
      const kept = await queryRows<{ source: string }>(
        gateway.database.db,
        sql`select source from task_events where task_id = ${taskUuid(task.id)} and payload->'task_result'->'videos'->0->>'id' = 'forged'`,
      );
      expect(kept).toEqual([{ source: 'webhook' }]);

      // The upstream finishes the task for real and calls back; its own record decides.
      expect(gateway.simulator.finish({ task_id: task.upstreamTaskId })).toBe(true);
      await watch.collector.untilDone();
      const done = await read(task);
      expect(done).toMatchObject({
        status: 'SUCCEEDED',
        statusMessage: null,
        version: task.version + 1,
        videos: [{ url: `${gateway.simulatorUrl}/results/${task.upstreamTaskId}.mp4`, durationSeconds: 10 }],
      });
      // The subscriber saw the task processing (perhaps after SUBMITTED), never the forged final, then the true one.
      const statuses = watch.collector.items.map((item) => item.data?.omniTaskUpdated.status);
      expect(statuses.slice(-2)).toEqual(['PROCESSING', 'SUCCEEDED']);
      expect(statuses.filter((status) => status === 'SUCCEEDED' || status === 'FAILED')).toEqual(['SUCCEEDED']);
      // Metered once, with the upstream's 10 s (STD: 10 s × 0.6 units).
      expect(await ledger(task)).toEqual([{ kind: 'video', video_seconds: 10, units: 6 }]);
    } finally {
      await client.dispose();
    }
  });

  it('a forged failure of a task the upstream is still processing fails nothing', async () => {
    const { task, client } = await processingTask();
    try {
      const forged = callbackBody(task, 'failed', { task_status_msg: 'forged failure' });
      expect(await postJson(callbackUrlOf(gateway, task.id), forged)).toEqual({ status: 200, body: { ok: true, changed: false } });
      expect(await read(task)).toEqual(task);
      expect(await ledger(task)).toEqual([]);
    } finally {
      await client.dispose();
    }
  });

  it('concurrent final callbacks of one task share one upstream read, and one of them reports the change', async () => {
    const { task, client } = await processingTask();
    try {
      // The upstream finishes the task without calling back: the only callbacks are the test's.
      gateway.simulator.settings.callbacks = false;
      const final = callbackBody(task, 'succeed');
      expect(gateway.simulator.finish(final)).toBe(true);
      // The upstream answers the read slowly, so that every callback arrives while it is in flight.
      gateway.simulator.faults.push({ op: 'get', kind: 'slow', ms: 1_000 });
      const before = upstreamReads(task);
      const answers = await Promise.all(Array.from({ length: 20 }, () => postJson(callbackUrlOf(gateway, task.id), final)));
      expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
      expect(answers.filter((answer) => (answer.body as { changed: boolean }).changed)).toHaveLength(1);
      expect(upstreamReads(task) - before).toBe(1);
      expect(await read(task)).toMatchObject({ status: 'SUCCEEDED', version: task.version + 1 });
      expect(await ledger(task)).toEqual([{ kind: 'video', video_seconds: 5, units: 3 }]);
    } finally {
      await client.dispose();
      gateway.simulator.faults.length = 0;
      gateway.simulator.settings.callbacks = true;
    }
  });

  it('a final callback the upstream cannot confirm now is answered 200 and left to the reconciler, due at once', async () => {
    const { task, client } = await processingTask();
    try {
      // The upstream finishes the task without calling back: the only callbacks are the test's.
      gateway.simulator.settings.callbacks = false;
      const final = callbackBody(task, 'succeed');
      expect(gateway.simulator.finish(final)).toBe(true);
      gateway.simulator.faults.push({ op: 'get', kind: 'http500' });
      const started = Date.now();
      expect(await postJson(callbackUrlOf(gateway, task.id), final)).toEqual({ status: 200, body: { ok: true, changed: false } });
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(await read(task)).toMatchObject({ status: 'PROCESSING', version: task.version });
      const [due] = await queryRows<{ due: boolean }>(
        gateway.database.db,
        sql`select next_check_at <= now() as due from omni_tasks where id = ${taskUuid(task.id)}`,
      );
      expect(due).toEqual({ due: true });
      // The reconciler confirms with a read of its own.
      expect(await gateway.reconciler().tick()).toBeGreaterThanOrEqual(1);
      expect(await read(task)).toMatchObject({ status: 'SUCCEEDED', videos: [{ url: 'https://cdn.example/v.mp4', durationSeconds: 5 }] });
      expect(await ledger(task)).toEqual([{ kind: 'video', video_seconds: 5, units: 3 }]);
    } finally {
      await client.dispose();
      gateway.simulator.faults.length = 0;
      gateway.simulator.settings.callbacks = true;
    }
  });
});

describe('the polls behind callbacks', () => {
  /** Seconds until the reconciler next looks at the task. */
  async function nextCheckIn(task: TaskView): Promise<number> {
    const [row] = await queryRows<{ s: number }>(
      gateway.database.db,
      sql`select extract(epoch from next_check_at - now())::float8 as s from omni_tasks where id = ${taskUuid(task.id)}`,
    );
    return Number(row?.s);
  }

  it('a task its callback moved is next polled 20 s later, one the create moved 5 s later', async () => {
    gateway.simulator.settings.callbacks = false;
    const submitted = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    gateway.simulator.settings.callbacks = true;
    expect(submitted.status).toBe('SUBMITTED');
    expect(await nextCheckIn(submitted)).toBeLessThanOrEqual(5);
    const { task, client } = await processingTask();
    try {
      const wait = await nextCheckIn(task);
      expect(wait).toBeGreaterThan(15);
      expect(wait).toBeLessThanOrEqual(20);
    } finally {
      await client.dispose();
    }
  });

  it.skipIf(serverUrl === null)(
    'an instance started later polls every task running upstream at once (callbacks sent while it was down are lost), except tasks another instance is polling',
    async () => {
      const { task, client } = await processingTask();
      const leased = await processingTask();
      try {
        expect(await nextCheckIn(task)).toBeGreaterThan(15);
        // The second task as another instance's reconciler leaves it while it polls it: attempt counted, lease a minute ahead.
        const leasedId = taskUuid(leased.task.id);
        await gateway.database.db.execute(
          sql`update omni_tasks set check_attempts = 1, next_check_at = now() + interval '60 seconds' where id = ${leasedId}`,
        );
        const leaseOf = async () =>
          queryRows<{ at: string; attempts: number }>(
            gateway.database.db,
            sql`select next_check_at::text as at, check_attempts as attempts from omni_tasks where id = ${leasedId}`,
          );
        const lease = await leaseOf();
        const before = upstreamReads(task);
        const started = await startGateway({
          databaseUrl: gateway.database.url ?? undefined,
          simulator: { instance: gateway.simulator, url: gateway.simulatorUrl },
          env: { RECONCILER_INTERVAL_MS: '600000' },
        });
        try {
          // Its reconciler's first tick, at start, reads the task upstream (the simulator records the read).
          await waitFor('the new instance to read the task upstream', () =>
            started.upstreamRequests.some((r) => r.method === 'GET' && r.path.endsWith(`/${task.upstreamTaskId}`)),
          );
          expect(upstreamReads(task)).toBe(before);
          // Another tick of its own (the first one's catch-up included, had it not finished): the leased task is untouched.
          await started.reconciler().tick();
          expect(await leaseOf()).toEqual(lease);
          expect(started.upstreamRequests.some((r) => r.path.endsWith(`/${leased.task.upstreamTaskId}`))).toBe(false);
        } finally {
          await started.stop();
        }
      } finally {
        await client.dispose();
        await leased.client.dispose();
      }
    },
  );
});
