import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { createSimulator } from '../../src/simulator/server.ts';
import { webhookToken } from '../../src/webhooks/tokens.ts';
import { createEmptyPostgresDatabase, POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { callbackBody, postJson, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import { freePort, listeningUrl, spawnGateway } from '../support/process.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { GatewayProcess } from '../support/process.ts';

const ADMIN = 'restart-test-admin-key-0123456789';
const SECRET = 'restart-test-webhook-secret-0123456789ab';
const SIZE = 4 * 1024 * 1024;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Serves `bytes`; the first request sends half and then holds the rest until `release()`. */
function holdingSource(bytes: Buffer) {
  let halfSent: () => void = () => {};
  const half = new Promise<void>((resolve) => {
    halfSent = resolve;
  });
  let requests = 0;
  const held: (() => void)[] = [];
  const server: Server = createServer((_req, res) => {
    requests += 1;
    res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': bytes.length });
    if (requests > 1) return res.end(bytes);
    res.write(bytes.subarray(0, bytes.length / 2), () => halfSent());
    held.push(() => res.end(bytes.subarray(bytes.length / 2)));
    res.on('close', () => held.splice(0));
  });
  return {
    half,
    requests: () => requests,
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}/video.mp4`;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

async function graphql(url: string, token: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data: any };
}

describe.skipIf(serverUrl === null)('the archive job across a crash', POSTGRES_ONLY, () => {
  it('resumes after the gateway is killed halfway through a download, and stores the video once', async () => {
    const database = await createEmptyPostgresDatabase();
    if (database === null) return;
    cleanups.push(() => database.drop());
    const dataDir = mkdtempSync(join(tmpdir(), 'archive-restart-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const simulator = createSimulator({ delays: { processingMs: 600_000, finishMs: 1_200_000 } });
    simulator.settings.callbacks = false;
    const { url: simulatorUrl } = await simulator.listen(0, '127.0.0.1');
    cleanups.push(() => simulator.close());
    const bytes = randomBytes(SIZE);
    const source = holdingSource(bytes);
    const sourceUrl = await source.listen();
    cleanups.push(() => source.close());

    const gatewayPort = await freePort();
    const env = {
      HOST: '127.0.0.1',
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      ADMIN_API_KEY: ADMIN,
      WEBHOOK_SECRET: SECRET,
      COMETAPI_KEY: 'test',
      // A real upstream key requires PUBLIC_BASE_URL: a port chosen now, kept across the restart.
      PORT: String(gatewayPort),
      PUBLIC_BASE_URL: `http://127.0.0.1:${gatewayPort}`,
      COMETAPI_BASE_URL: simulatorUrl,
      VIDEO_STORE: 'local',
      ALLOW_PRIVATE_URLS: 'true',
      RECONCILER_INTERVAL_MS: '100',
      // The lease is this plus 5 s: how long the second instance waits for the dead one's job.
      ARCHIVE_TIMEOUT_MS: '2000',
    };
    const start = (): GatewayProcess => {
      const gateway = spawnGateway(env);
      cleanups.push(() => gateway.kill('SIGKILL'));
      return gateway;
    };

    const first = start();
    const firstUrl = await listeningUrl(first);
    const created = await graphql(firstUrl, ADMIN, 'mutation { createTenant(input: { name: "Crashy" }) { apiKey } }');
    const apiKey = created.data.createTenant.apiKey as string;
    const made = await graphql(
      firstUrl,
      apiKey,
      'mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { ... on CreateOmniVideoSuccess { task { id upstreamTaskId } } } }',
      { input: TEXT_TO_VIDEO },
    );
    const task = made.data.createOmniVideo.task as { id: string; upstreamTaskId: string };
    const taskId = taskUuid(task.id);
    const body = callbackBody(task, 'succeed', { task_result: { videos: [{ id: 'v', url: sourceUrl, duration: '5' }] } });
    simulator.finish(body); // the upstream agrees: a final callback is confirmed by a read
    expect((await postJson(`${firstUrl}/webhooks/kling/${taskId}/${webhookToken(SECRET, taskId)}`, body)).status).toBe(200);

    await source.half; // the first instance is halfway through the download…
    first.child.kill('SIGKILL'); // …and dies
    expect(await first.exited).toBeNull();

    const second = start();
    const secondUrl = await listeningUrl(second);
    // The archive announces itself like any change: wait for it on the second instance.
    const ws = wsClient(secondUrl, apiKey);
    cleanups.push(() => ws.dispose());
    const watch = await subscribeWs(ws, 'subscription { omniTaskUpdated { id videos { archived } } }');
    await watch.collector.until(
      (c) => c.items.some((item) => item.data?.omniTaskUpdated.id === task.id && item.data.omniTaskUpdated.videos[0]?.archived),
      'the archived video',
      30_000,
    );
    const client = postgres(database.url, { max: 1, onnotice: () => {} });
    cleanups.push(() => client.end());
    const jobs: { status: string; attempts: number; stored_key: string | null }[] =
      await client`select status, attempts, stored_key from video_archives where task_id = ${taskId}`;
    expect(jobs).toEqual([{ status: 'done', attempts: 2, stored_key: expect.any(String) }]);
    expect(source.requests()).toBe(2);
    const stored = readFileSync(join(dataDir, 'videos', ...jobs[0]!.stored_key!.split('/')));
    expect(createHash('sha256').update(stored).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
    const events = await client`select count(*)::int as count from task_events where task_id = ${taskId} and kind = 'archive'`;
    expect(events[0]?.count).toBe(1);

    const read = await graphql(secondUrl, apiKey, 'query ($id: ID!) { omniTask(id: $id) { videos { url archived sizeBytes } } }', {
      id: task.id,
    });
    const video = read.data.omniTask.videos[0] as { url: string; archived: boolean; sizeBytes: number };
    expect(video).toMatchObject({ archived: true, sizeBytes: SIZE });
    expect(Buffer.from(await (await fetch(video.url)).arrayBuffer()).equals(bytes)).toBe(true);
  });
});
