import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import type { Collector } from '../support/subscriptions.ts';

/*
 * No paid video is dropped: before failing a task at its deadline the reconciler asks the upstream
 * once, and a success the upstream reports after a deadline failure (poll, callback confirmed by a
 * read, refresh) turns the task SUCCEEDED, metered once and archived. The deadline is reached by
 * moving `deadline_at` into the past; the reconciler ticks by hand.
 */

const WATCH_ALL = 'subscription { omniTaskUpdated { id status version } }';
const USAGE = '{ viewer { usage { succeededTasks failedTasks videoSeconds } } }';
const DEADLINE_MESSAGE = /^The upstream gave no final state within 30 minutes; the gateway gave the task up\.$/;

let gateway: TestGateway;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'late-success-'));
  gateway = await startGateway({
    // Tasks turn processing upstream at once and finish only when a test finishes them.
    delays: { processingMs: 50, finishMs: 600_000 },
    env: { VIDEO_STORE: 'local', DATA_DIR: dataDir, RECONCILER_INTERVAL_MS: '600000' },
  });
});
afterAll(async () => {
  await gateway?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function read(tenant: TestTenant, task: TaskView): Promise<TaskView> {
  const query = `query ($id: ID!) { omniTask(id: $id) { ${TASK_FIELDS} } }`;
  return expectData(await gateway.graphql<{ omniTask: TaskView }>(query, { id: task.id }, tenant.apiKey), query).omniTask;
}

async function usage(tenant: TestTenant): Promise<unknown> {
  return expectData(await gateway.graphql<{ viewer: { usage: unknown } }>(USAGE, {}, tenant.apiKey), USAGE).viewer.usage;
}

async function ledger(task: TaskView): Promise<{ kind: string; video_seconds: number }[]> {
  return queryRows(gateway.database.db, sql`select kind, video_seconds from usage_events where task_id = ${taskUuid(task.id)}`);
}

async function row(task: TaskView): Promise<{ watched: boolean; archives: number }> {
  const [found] = await queryRows<{ watched: boolean; archives: number }>(
    gateway.database.db,
    sql`select next_check_at is not null as watched,
               (select count(*)::int from video_archives a where a.task_id = t.id) as archives
        from omni_tasks t where id = ${taskUuid(task.id)}`,
  );
  return { watched: Boolean(found?.watched), archives: Number(found?.archives) };
}

async function pastDeadline(task: TaskView, ago = '1 second'): Promise<void> {
  await queryRows(gateway.database.db, sql`update omni_tasks set deadline_at = now() - ${ago}::interval where id = ${taskUuid(task.id)}`);
}

/** Stands in for waiting the reconciler's backoff: the task is due now. */
async function dueNow(task: TaskView): Promise<void> {
  await queryRows(gateway.database.db, sql`update omni_tasks set next_check_at = now() where id = ${taskUuid(task.id)}`);
}

function upstreamReads(task: TaskView): number {
  return gateway.upstreamRequests.filter((request) => request.method === 'GET' && request.path.endsWith(`/${task.upstreamTaskId}`)).length;
}

function statusesOf(collector: Collector, task: TaskView): string[] {
  return collector.items
    .map((item) => item.data?.omniTaskUpdated)
    .filter((update) => update?.id === task.id)
    .map((update) => update.status);
}

/** A task the upstream is working on, and the gateway's reconciler failing it at its deadline. */
async function failedAtDeadline(tenant: TestTenant): Promise<TaskView> {
  const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
  await pastDeadline(task);
  const reads = upstreamReads(task);
  expect(await gateway.reconciler().tick()).toBe(1);
  // Asked once before giving up: the upstream was still processing.
  expect(upstreamReads(task)).toBe(reads + 1);
  const failed = await read(tenant, task);
  expect(failed).toMatchObject({ status: 'FAILED', statusMessage: expect.stringMatching(DEADLINE_MESSAGE), videos: [] });
  expect(await usage(tenant)).toEqual({ succeededTasks: 0, failedTasks: 1, videoSeconds: 0 });
  // Still watched: the upstream may yet finish it.
  expect(await row(task)).toEqual({ watched: true, archives: 0 });
  return failed;
}

describe('a task the upstream finishes after its deadline', () => {
  it('A task that finishes upstream after its deadline ends SUCCEEDED, metered once, archived.', async () => {
    gateway.simulator.settings.callbacks = false;
    const tenant = await createTenant(gateway, 'Late');
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, WATCH_ALL);
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      await watch.collector.until((c) => statusesOf(c, task).includes('SUBMITTED'), 'the task on the tenant feed');
      await pastDeadline(task);
      expect(await gateway.reconciler().tick()).toBe(1);
      const failed = await read(tenant, task);
      expect(failed).toMatchObject({ status: 'FAILED', statusMessage: expect.stringMatching(DEADLINE_MESSAGE) });
      expect(await usage(tenant)).toEqual({ succeededTasks: 0, failedTasks: 1, videoSeconds: 0 });

      // The upstream finishes the task after all (silently: its callbacks are off); the reconciler's next look finds it.
      expect(gateway.simulator.finish({ task_id: task.upstreamTaskId })).toBe(true);
      await dueNow(task);
      expect(await gateway.reconciler().tick()).toBe(1);
      const succeeded = await read(tenant, task);
      expect(succeeded).toMatchObject({
        status: 'SUCCEEDED',
        statusMessage: null,
        version: failed.version + 1,
        videos: [{ upstreamUrl: `${gateway.simulatorUrl}/results/${task.upstreamTaskId}.mp4`, durationSeconds: 5, archived: false }],
      });
      expect(succeeded.completedAt).not.toBeNull();
      await watch.collector.until((c) => statusesOf(c, task).includes('SUCCEEDED'), 'SUCCEEDED on the tenant feed');
      expect(statusesOf(watch.collector, task)).toEqual(['PENDING', 'SUBMITTED', 'FAILED', 'SUCCEEDED']);

      // Metered once, as a success only.
      expect(await ledger(task)).toEqual([{ kind: 'video', video_seconds: 5 }]);
      expect(await usage(tenant)).toEqual({ succeededTasks: 1, failedTasks: 0, videoSeconds: 5 });
      // No longer watched, and archived like any success.
      expect(await row(task)).toEqual({ watched: false, archives: 1 });
      expect(await gateway.archiver().tick()).toBe(1);
      expect((await read(tenant, task)).videos[0]?.archived).toBe(true);
      expect(await gateway.reconciler().tick()).toBe(0);
    } finally {
      await client.dispose();
      gateway.simulator.settings.callbacks = true;
    }
  });

  it('the upstream calling back its success after the deadline failure (confirmed by a read) also turns it SUCCEEDED', async () => {
    const tenant = await createTenant(gateway, 'Late callback');
    const task = await failedAtDeadline(tenant);
    // The simulator finishes the task and calls back: the callback is confirmed by a read, then applied.
    expect(gateway.simulator.finish({ task_id: task.upstreamTaskId })).toBe(true);
    // A per-task subscription ended at FAILED: poll the stored task (bounded) until the callback is applied.
    await expect.poll(async () => (await read(tenant, task)).status, { timeout: 10_000 }).toBe('SUCCEEDED');
    expect(await read(tenant, task)).toMatchObject({ statusMessage: null, version: task.version + 1 });
    expect(await ledger(task)).toEqual([{ kind: 'video', video_seconds: 5 }]);
    expect(await usage(tenant)).toEqual({ succeededTasks: 1, failedTasks: 0, videoSeconds: 5 });
  });

  it('a refresh that finds the success after the deadline failure turns it SUCCEEDED', async () => {
    gateway.simulator.settings.callbacks = false;
    try {
      const tenant = await createTenant(gateway, 'Late refresh');
      const task = await failedAtDeadline(tenant);
      expect(gateway.simulator.finish({ task_id: task.upstreamTaskId })).toBe(true);
      const query = 'mutation ($id: ID!) { refreshOmniTask(id: $id) { status statusMessage } }';
      const refreshed = expectData(await gateway.graphql<{ refreshOmniTask: unknown }>(query, { id: task.id }, tenant.apiKey), query);
      expect(refreshed.refreshOmniTask).toEqual({ status: 'SUCCEEDED', statusMessage: null });
      expect(await ledger(task)).toEqual([{ kind: 'video', video_seconds: 5 }]);
    } finally {
      gateway.simulator.settings.callbacks = true;
    }
  });
});

describe('the deadline', () => {
  it('asks the upstream once first: a task that finished there is recorded as it finished, not failed', async () => {
    gateway.simulator.settings.callbacks = false;
    try {
      const tenant = await createTenant(gateway, 'Finished in time');
      const done = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const refused = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      expect(gateway.simulator.finish({ task_id: done.upstreamTaskId })).toBe(true);
      expect(gateway.simulator.finish({ task_id: refused.upstreamTaskId, task_status: 'failed', task_status_msg: 'Content review' })).toBe(
        true,
      );
      await pastDeadline(done);
      await pastDeadline(refused);
      expect(await gateway.reconciler().tick()).toBe(2);
      expect(await read(tenant, done)).toMatchObject({ status: 'SUCCEEDED', statusMessage: null, videos: [{ durationSeconds: 5 }] });
      expect(await read(tenant, refused)).toMatchObject({ status: 'FAILED', statusMessage: 'Content review' });
      const failures = await queryRows<{ source: string }>(
        gateway.database.db,
        sql`select source from task_events where kind = 'status' and to_status = 'FAILED' and task_id = ${taskUuid(refused.id)}`,
      );
      expect(failures).toEqual([{ source: 'poll' }]);
      expect(await usage(tenant)).toEqual({ succeededTasks: 1, failedTasks: 1, videoSeconds: 5 });
      // Both are final upstream: nothing left to watch.
      expect((await row(done)).watched).toBe(false);
      expect((await row(refused)).watched).toBe(false);
    } finally {
      gateway.simulator.settings.callbacks = true;
    }
  });

  it('stops watching a deadline failure once the upstream fails it too, or a day after the deadline', async () => {
    gateway.simulator.settings.callbacks = false;
    try {
      const tenant = await createTenant(gateway, 'Given up');
      const failedUpstream = await failedAtDeadline(tenant);
      expect(gateway.simulator.finish({ task_id: failedUpstream.upstreamTaskId, task_status: 'failed' })).toBe(true);
      await dueNow(failedUpstream);
      expect(await gateway.reconciler().tick()).toBe(1);
      expect(await read(tenant, failedUpstream)).toMatchObject({
        status: 'FAILED',
        statusMessage: expect.stringMatching(DEADLINE_MESSAGE),
      });
      expect((await row(failedUpstream)).watched).toBe(false);

      const forgotten = await failedAtDeadline(await createTenant(gateway, 'Forgotten'));
      await pastDeadline(forgotten, '25 hours');
      await dueNow(forgotten);
      const reads = upstreamReads(forgotten);
      expect(await gateway.reconciler().tick()).toBe(1);
      expect(upstreamReads(forgotten)).toBe(reads);
      expect((await row(forgotten)).watched).toBe(false);
    } finally {
      gateway.simulator.settings.callbacks = true;
    }
  });

  it("a failure that was not the deadline's never turns into a success", async () => {
    gateway.simulator.settings.callbacks = false;
    try {
      const tenant = await createTenant(gateway, 'Really failed');
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const failed = callbackBody(task, 'failed');
      expect(gateway.simulator.finish(failed)).toBe(true);
      expect((await postJson(callbackUrlOf(gateway, task.id), failed)).status).toBe(200);
      const before = await read(tenant, task);
      expect(before).toMatchObject({ status: 'FAILED', statusMessage: 'Image pixel is invalid' });
      const applied = await gateway.app.services.tasks.apply(taskUuid(task.id), {
        status: 'SUCCEEDED',
        videos: [{ id: 'v', upstreamUrl: 'https://cdn.example/v.mp4', durationSeconds: 5 }],
        source: 'test',
      });
      expect(applied?.changed).toBe(false);
      expect(await read(tenant, task)).toEqual(before);
      expect(await ledger(task)).toEqual([{ kind: 'failure', video_seconds: 0 }]);
    } finally {
      gateway.simulator.settings.callbacks = true;
    }
  });
});
