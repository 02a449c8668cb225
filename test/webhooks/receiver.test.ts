import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { toGlobalId } from '../../src/ids.ts';
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

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  // The simulator stays quiet (slow, no callbacks): every status change in these tests is ours.
  gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 } });
  gateway.simulator.settings.callbacks = false;
  tenant = await createTenant(gateway, 'Hooked');
});
afterAll(async () => {
  await gateway?.stop();
});

async function read(task: TaskView): Promise<TaskView> {
  const query = `query ($id: ID!) { omniTask(id: $id) { ${TASK_FIELDS} } }`;
  return expectData(await gateway.graphql<{ omniTask: TaskView }>(query, { id: task.id }, tenant.apiKey)).omniTask;
}

async function eventCount(task: TaskView, kind: 'status' | 'upstream'): Promise<number> {
  const rows = await queryRows<{ count: number }>(
    gateway.database.db,
    sql`select count(*)::int as count from task_events where task_id = ${taskUuid(task.id)} and kind = ${kind}`,
  );
  return Number(rows[0]?.count);
}

describe('POST /webhooks/kling/{taskId}/{token}', () => {
  it('moves a task forward, stores the raw payloads, and ignores duplicates and stale statuses', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const url = callbackUrlOf(gateway, task.id);
    expect(task).toMatchObject({ status: 'SUBMITTED', version: 2 });

    expect(await postJson(url, callbackBody(task, 'processing'))).toEqual({ status: 200, body: { ok: true, changed: true } });
    expect(await read(task)).toMatchObject({ status: 'PROCESSING', version: 3 });

    const final = callbackBody(task, 'succeed');
    // A final callback is confirmed by an upstream read: the upstream finished the task as the body says.
    expect(gateway.simulator.finish(final)).toBe(true);
    expect(await postJson(url, final)).toEqual({ status: 200, body: { ok: true, changed: true } });
    const succeeded = await read(task);
    expect(succeeded).toMatchObject({
      status: 'SUCCEEDED',
      version: 4,
      videos: [
        { id: 'vid-1', url: 'https://cdn.example/v.mp4', upstreamUrl: 'https://cdn.example/v.mp4', durationSeconds: 5, archived: false },
      ],
    });
    expect(succeeded.completedAt).not.toBeNull();

    // A duplicate final and a stale processing after the final: acknowledged, nothing changes.
    expect(await postJson(url, final)).toEqual({ status: 200, body: { ok: true, changed: false } });
    expect(await postJson(url, callbackBody(task, 'processing'))).toEqual({ status: 200, body: { ok: true, changed: false } });
    expect(await postJson(url, callbackBody(task, 'failed'))).toEqual({ status: 200, body: { ok: true, changed: false } });
    expect(await read(task)).toEqual(succeeded);
    // Every payload is kept for audit, whether or not it changed anything.
    expect(await eventCount(task, 'upstream')).toBeGreaterThanOrEqual(6);
  });

  it('reads the failure reason from task_status_msg', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const failed = callbackBody(task, 'failed');
    expect(gateway.simulator.finish(failed)).toBe(true);
    expect((await postJson(callbackUrlOf(gateway, task.id), failed)).status).toBe(200);
    expect(await read(task)).toMatchObject({ status: 'FAILED', statusMessage: 'Image pixel is invalid', version: 3 });
  });

  it("refuses a bad token, another task's token and an unknown task alike with 401, changing nothing", async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const other = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const url = callbackUrlOf(gateway, task.id);
    const otherUrl = callbackUrlOf(gateway, other.id);
    const body = callbackBody(task, 'succeed');
    const tampered = url.replace(/.$/, (last) => (last === 'A' ? 'B' : 'A'));
    const swapped = `${url.slice(0, url.lastIndexOf('/'))}/${otherUrl.slice(otherUrl.lastIndexOf('/') + 1)}`;
    const unknown = url.replace(taskUuid(task.id), '00000000-0000-4000-8000-000000000000');
    // A token one character short or long too: the comparison must refuse it, not fail on the length.
    const shorter = url.slice(0, -1);
    const longer = `${url}A`;
    for (const target of [tampered, swapped, unknown, shorter, longer, `${url}/extra`, url.replace(/\/[^/]+$/, '')]) {
      const response = await postJson(target, body);
      expect(response.status, target).toBe(401);
    }
    expect(await read(task)).toMatchObject({ status: 'SUBMITTED', version: 2 });
  });

  it('refuses a body naming another upstream task with 400, changing nothing', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const other = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const url = callbackUrlOf(gateway, task.id);
    const response = await postJson(url, callbackBody({ id: task.id, upstreamTaskId: other.upstreamTaskId }, 'succeed'));
    expect(response.status).toBe(400);
    const foreignExternal = await postJson(url, callbackBody({ id: other.id, upstreamTaskId: task.upstreamTaskId }, 'succeed'));
    expect(foreignExternal.status).toBe(400);
    expect(await read(task)).toMatchObject({ status: 'SUBMITTED', version: 2 });
  });

  it('answers 413 to a body over 1 MB and 400 to malformed JSON or an unknown shape', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const url = callbackUrlOf(gateway, task.id);
    const huge = JSON.stringify({ ...callbackBody(task, 'succeed'), padding: 'x'.repeat(1024 * 1024) });
    expect((await postJson(url, huge)).status).toBe(413);
    expect((await postJson(url, '{"task_id": ')).status).toBe(400);
    expect((await postJson(url, { hello: 'world' })).status).toBe(400);
    expect((await postJson(url, { ...callbackBody(task, 'succeed'), task_status: 'exploded' })).status).toBe(400);
    expect(await read(task)).toMatchObject({ status: 'SUBMITTED', version: 2 });
    expect(await eventCount(task, 'status')).toBe(2);
  });

  it('a callback that comes before the create is answered moves the task on, but never sets its upstream id', async () => {
    // Whoever learns a callback URL could otherwise pin the task to a made-up upstream id, and the
    // create's real answer (and every genuine callback after it) would no longer match.
    gateway.simulator.faults.push({ op: 'create', kind: 'slow', ms: 2_000 });
    const creating = createTask(gateway, tenant, { ...TEXT_TO_VIDEO, prompt: 'Answered slowly' });
    let sent: { external_task_id?: unknown } | undefined;
    for (let turn = 0; turn < 100_000 && sent === undefined; turn += 1) {
      sent = gateway.upstreamRequests.find((request) => request.body?.prompt === 'Answered slowly')?.body ?? undefined;
      if (sent === undefined) await new Promise((resolve) => setImmediate(resolve));
    }
    const early = { id: toGlobalId('OmniTask', String(sent?.external_task_id)), upstreamTaskId: 'made-up-999' };
    const url = callbackUrlOf(gateway, early.id);
    expect(await postJson(url, callbackBody(early, 'processing'))).toEqual({ status: 200, body: { ok: true, changed: true } });
    const task = await creating;
    expect(task.upstreamTaskId).not.toBe('made-up-999');
    expect(await read(task)).toMatchObject({ status: 'PROCESSING', upstreamTaskId: task.upstreamTaskId });
    // The upstream's own callbacks still match the task.
    expect((await postJson(url, callbackBody(task, 'processing'))).status).toBe(200);
    expect((await postJson(url, callbackBody(early, 'processing'))).status).toBe(400);
  });

  it('answers 400 to an id with a NUL character and to a body nested too deeply, changing nothing', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const url = callbackUrlOf(gateway, task.id);
    expect((await postJson(url, callbackBody({ id: task.id, upstreamTaskId: `${task.upstreamTaskId}\u0000` }, 'processing'))).status).toBe(
      400,
    );
    expect((await postJson(url, { ...callbackBody(task, 'processing'), task_info: { external_task_id: 'a\u0000b' } })).status).toBe(400);
    const body = JSON.stringify(callbackBody(task, 'processing'));
    const deep = `${body.slice(0, -1)},"padding":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
    expect((await postJson(url, deep)).status).toBe(400);
    expect(await read(task)).toMatchObject({ status: 'SUBMITTED', version: 2 });
  });
});
