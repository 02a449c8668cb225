import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { RequestListener, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';

export type TestServer = { url: string; server: Server; close(): Promise<void> };

/** A real HTTP server on 127.0.0.1 and a free port; close() also drops open (hanging) connections. */
export async function listen(handler: RequestListener): Promise<TestServer> {
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export async function tempDir(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'omni-storage-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Every file under `dir`, as paths relative to it. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
    .sort();
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function* patternChunks(total: number, chunkBytes: number): Generator<Buffer> {
  for (let at = 0; at < total; at += chunkBytes) {
    const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, total - at));
    for (let i = 0; i < chunk.length; i += 4096) chunk.fill((at + i) / 4096, i, i + 4096);
    yield chunk;
  }
}

/** `total` bytes of a cheap, position-dependent pattern, in chunks of `chunkBytes` (a multiple of 4096). */
export async function* patternBody(total: number, chunkBytes = 1024 * 1024): AsyncGenerator<Uint8Array> {
  yield* patternChunks(total, chunkBytes);
}

export function patternSha256(total: number, chunkBytes = 1024 * 1024): string {
  const hash = createHash('sha256');
  for (const chunk of patternChunks(total, chunkBytes)) hash.update(chunk);
  return hash.digest('hex');
}

export async function* bodyOf(...chunks: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
}

const SIMULATOR_KEY = 'sk-storage-tests';

/** A simulator on loopback whose tasks succeed at once, serving result videos of `videoBytes`. */
export async function startSimulator(videoBytes: number): Promise<{ simulator: Simulator; url: string }> {
  const simulator = createSimulator({ apiKey: SIMULATOR_KEY, videoBytes, delays: { processingMs: 0, finishMs: 0 } });
  const { url } = await simulator.listen(0, '127.0.0.1');
  return { simulator, url };
}

/** Creates a task through the simulator's HTTP API and returns its result URL once it succeeded. */
export async function simulatedResult(simulatorUrl: string): Promise<{ taskId: string; videoUrl: string }> {
  const headers = { authorization: `Bearer ${SIMULATOR_KEY}`, 'content-type': 'application/json' };
  const created = await fetch(`${simulatorUrl}/kling/v1/videos/omni-video`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ prompt: 'a fox' }),
  });
  const taskId = ((await created.json()) as { data: { task_id: string } }).data.task_id;
  // The task finishes on a 0 ms timer; a few round trips are enough, the bound only stops a broken simulator.
  for (let attempt = 0; attempt < 200; attempt++) {
    const response = await fetch(`${simulatorUrl}/kling/v1/videos/omni-video/${taskId}`, { headers });
    const { data } = (await response.json()) as { data: { task_status: string; task_result: { videos?: { url: string }[] } } };
    const videoUrl = data.task_result.videos?.[0]?.url;
    if (data.task_status === 'succeed' && videoUrl !== undefined) return { taskId, videoUrl };
  }
  throw new Error(`simulated task ${taskId} did not succeed`);
}
