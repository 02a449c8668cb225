import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { expectedVideoBytes } from '../../src/simulator/video-bytes.ts';
import { signVideoPath } from '../../src/storage/signed-url.ts';
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

const SECRET = 'archive-test-secret-0123456789abcdef0123';
const VIDEO_BYTES = 300_000;

async function readTask(
  gateway: TestGateway,
  tenant: TestTenant,
  task: TaskView,
): Promise<TaskView & { videos: { sizeBytes: number | null; sha256: string | null }[] }> {
  const query = `query ($id: ID!) { omniTask(id: $id) { ${TASK_FIELDS.replace('archived }', 'archived sizeBytes sha256 }')} } }`;
  return expectData(await gateway.graphql<{ omniTask: never }>(query, { id: task.id }, tenant.apiKey)).omniTask;
}

async function job(gateway: TestGateway, task: TaskView) {
  const rows = await queryRows<{ status: string; attempts: number; last_error: string | null }>(
    gateway.database.db,
    sql`select status, attempts, last_error from video_archives where task_id = ${taskUuid(task.id)}`,
  );
  return rows;
}

describe('archiving finished videos into the local store', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  let dataDir: string;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'archive-'));
    gateway = await startGateway({
      delays: { processingMs: 20, finishMs: 40 },
      videoBytes: VIDEO_BYTES,
      // The background loops wait; the tests run the archiver by hand.
      env: { VIDEO_STORE: 'local', DATA_DIR: dataDir, WEBHOOK_SECRET: SECRET, RECONCILER_INTERVAL_MS: '600000' },
    });
    tenant = await createTenant(gateway, 'Archivist');
  });
  afterAll(async () => {
    await gateway?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function finishedTask(): Promise<TaskView> {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { status } }', { id: task.id });
      await watch.collector.untilDone();
    } finally {
      await client.dispose();
    }
    return readTask(gateway, tenant, task);
  }

  it('copies the video; its url serves the exact bytes, Range slices, and refuses bad or expired signatures', async () => {
    const task = await finishedTask();
    expect(task.videos[0]).toMatchObject({ archived: false, url: task.videos[0]!.upstreamUrl });
    const versionBefore = task.version;
    expect(await gateway.archiver().tick()).toBe(1);
    const archived = await readTask(gateway, tenant, task);
    const expected = expectedVideoBytes(task.upstreamTaskId!, VIDEO_BYTES);
    const video = archived.videos[0]!;
    expect(video).toMatchObject({
      archived: true,
      sizeBytes: VIDEO_BYTES,
      sha256: createHash('sha256').update(expected).digest('hex'),
      upstreamUrl: task.videos[0]!.upstreamUrl,
    });
    expect(archived.version).toBe(versionBefore + 1);
    expect(video.url.startsWith(`${gateway.url}/files/videos/`)).toBe(true);

    const full = await fetch(video.url);
    expect(full.status).toBe(200);
    expect(full.headers.get('content-type')).toBe('video/mp4');
    expect(full.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await full.arrayBuffer()).equals(expected)).toBe(true);

    const range = await fetch(video.url, { headers: { range: 'bytes=1000-1999' } });
    expect(range.status).toBe(206);
    expect(range.headers.get('content-range')).toBe(`bytes 1000-1999/${VIDEO_BYTES}`);
    expect(Buffer.from(await range.arrayBuffer()).equals(expected.subarray(1000, 2000))).toBe(true);

    const url = new URL(video.url);
    const sig = url.searchParams.get('sig')!;
    url.searchParams.set('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`);
    expect((await fetch(url)).status).toBe(403);

    const key = decodeURIComponent(new URL(video.url).pathname.replace('/files/videos/', ''));
    const expired = `${gateway.url}${signVideoPath(SECRET, key, new Date(Date.now() - 1000))}`;
    expect((await fetch(expired)).status).toBe(403);
    expect(await job(gateway, task)).toEqual([{ status: 'done', attempts: 1, last_error: null }]);
  });

  it('retries a 5xx from the source', async () => {
    const task = await finishedTask();
    gateway.simulator.faults.push({ op: 'result', kind: 'http500' });
    expect(await gateway.archiver().tick()).toBe(1);
    expect(await job(gateway, task)).toEqual([{ status: 'pending', attempts: 1, last_error: expect.stringContaining('500') }]);
    expect((await readTask(gateway, tenant, task)).videos[0]?.archived).toBe(false);
    // The retry is due after a backoff; bring it forward instead of waiting.
    await queryRows(gateway.database.db, sql`update video_archives set next_attempt_at = now() where task_id = ${taskUuid(task.id)}`);
    expect(await gateway.archiver().tick()).toBe(1);
    expect(await job(gateway, task)).toEqual([{ status: 'done', attempts: 2, last_error: null }]);
    expect((await readTask(gateway, tenant, task)).videos[0]?.archived).toBe(true);
  });
});

describe('result URLs at private addresses', () => {
  it('are refused when ALLOW_PRIVATE_URLS is off: the job fails, the task keeps the upstream URL', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'archive-private-'));
    const gateway = await startGateway({
      delays: { processingMs: 600_000, finishMs: 1_200_000 },
      env: { VIDEO_STORE: 'local', DATA_DIR: dataDir, ALLOW_PRIVATE_URLS: 'false', RECONCILER_INTERVAL_MS: '600000' },
    });
    try {
      gateway.simulator.settings.callbacks = false;
      const tenant = await createTenant(gateway, 'Private');
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const body = callbackBody(task, 'succeed', {
        task_result: { videos: [{ id: 'v', url: `${gateway.simulatorUrl}/results/${task.upstreamTaskId}.mp4`, duration: '5' }] },
      });
      gateway.simulator.finish(body); // the upstream agrees: a final callback is confirmed by a read
      expect((await postJson(callbackUrlOf(gateway, task.id), body)).status).toBe(200);
      expect(await gateway.archiver().tick()).toBe(1);
      expect(await job(gateway, task)).toEqual([
        { status: 'failed', attempts: 1, last_error: expect.stringContaining('is not a public address') },
      ]);
      const read = await readTask(gateway, tenant, task);
      expect(read.videos[0]).toMatchObject({ archived: false, url: read.videos[0]!.upstreamUrl });
    } finally {
      await gateway.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
