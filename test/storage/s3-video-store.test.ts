import S3rver from '@20minutes/s3rver';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { expectedVideoBytes } from '../../src/simulator/video-bytes.ts';
import { downloadVideo } from '../../src/storage/download.ts';
import { createS3VideoStore } from '../../src/storage/s3-video-store.ts';
import { InvalidVideoKeyError, VideoTooLargeError } from '../../src/storage/video-store.ts';
import type { VideoStore } from '../../src/storage/video-store.ts';
import { bodyOf, patternBody, patternSha256, sha256, simulatedResult, startSimulator, tempDir } from './helpers.ts';

/*
 * Against s3rver, a fake S3 server that runs in-process from npm: real S3 HTTP, SigV4 checked
 * on every request and on presigned URLs. It does not implement AbortMultipartUpload (it answers
 * 405), so the oversize test checks that the store sent the abort and never completed the upload.
 */

const BUCKET = 'videos';
const MB = 1024 * 1024;

describe('S3 video store', () => {
  let s3: S3rver;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let endpoint: string;
  let store: VideoStore;
  let requests: string[];

  beforeAll(async () => {
    dir = await tempDir();
    s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir.path, configureBuckets: [{ name: BUCKET }] });
    const { port } = await s3.run();
    endpoint = `http://127.0.0.1:${port}`;
    s3.httpServer.on('request', (req) => requests.push(`${req.method} ${req.url}`));
    // The store's own client finds these through the SDK's default credential chain.
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'S3RVER');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'S3RVER');
    vi.stubEnv('AWS_SESSION_TOKEN', '');
    store = createS3VideoStore({ bucket: BUCKET, region: null, endpoint, forcePathStyle: true });
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await s3.close();
    await dir.remove();
  });
  beforeEach(() => {
    requests = [];
  });

  it('puts a small video in one request, heads it, and serves it by presigned URL', async () => {
    const key = 'tenant/task-small/1.mp4';
    const stored = await store.put(key, bodyOf('small ', 'video'), { maxBytes: 1000, contentType: 'video/mp4' });
    expect(stored).toEqual({ key, size: 11, sha256: sha256(Buffer.from('small video')) });
    expect(await store.head(key)).toEqual({ size: 11 });

    const url = await store.url(key, new Date(Date.now() + 3600_000));
    expect(url.startsWith(`${endpoint}/${BUCKET}/${key}?`)).toBe(true);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('video/mp4');
    expect(await response.text()).toBe('small video');
  });

  it('streams a 20 MB video as a multipart upload with the right size and SHA-256', async () => {
    const key = 'tenant/task-large/1.mp4';
    const size = 20 * MB;
    const stored = await store.put(key, patternBody(size), { maxBytes: size, contentType: 'video/mp4' });
    expect(stored).toEqual({ key, size, sha256: patternSha256(size) });
    expect(requests.filter((r) => /^PUT .*[?&]partNumber=/.test(r))).toHaveLength(3);
    expect(await store.head(key)).toEqual({ size });
    const response = await fetch(await store.url(key, new Date(Date.now() + 60_000)));
    expect(sha256(Buffer.from(await response.arrayBuffer()))).toBe(stored.sha256);
  });

  it('refuses a tampered presigned URL', async () => {
    const key = 'tenant/task-tamper/1.mp4';
    await store.put(key, bodyOf('video'), { maxBytes: 100, contentType: 'video/mp4' });
    const url = new URL(await store.url(key, new Date(Date.now() + 60_000)));
    url.pathname = `/${BUCKET}/tenant/task-small/1.mp4`;
    expect((await fetch(url)).status).toBe(403);
  });

  it('aborts the multipart upload of an oversize video and leaves no object', async () => {
    const key = 'tenant/task-oversize/1.mp4';
    await expect(store.put(key, patternBody(30 * MB), { maxBytes: 12 * MB, contentType: 'video/mp4' })).rejects.toBeInstanceOf(
      VideoTooLargeError,
    );
    const created = requests.find((r) => r.startsWith(`POST /${BUCKET}/${key}?uploads`));
    expect(created, requests.join('\n')).toBeDefined();
    expect(
      requests.filter((r) => /^DELETE .*[?&]uploadId=/.test(r)),
      requests.join('\n'),
    ).toHaveLength(1);
    expect(
      requests.filter((r) => /^POST .*[?&]uploadId=/.test(r)),
      'never completed',
    ).toEqual([]);
    expect(await store.head(key)).toBeNull();
  });

  it('keeps the previous object when a replacing upload fails', async () => {
    const key = 'tenant/task-replace/1.mp4';
    await store.put(key, bodyOf('first version'), { maxBytes: 100 * MB, contentType: 'video/mp4' });
    const broken = new Error('upstream went away');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield* patternBody(10 * MB);
      throw broken;
    }
    await expect(store.put(key, failing(), { maxBytes: 100 * MB, contentType: 'video/mp4' })).rejects.toBe(broken);
    expect(await store.head(key)).toEqual({ size: 13 });
    expect(await (await fetch(await store.url(key, new Date(Date.now() + 60_000)))).text()).toBe('first version');
  });

  it('answers head with null for a missing key and refuses invalid keys', async () => {
    expect(await store.head('tenant/none/1.mp4')).toBeNull();
    await expect(store.put('../x.mp4', bodyOf('x'), { maxBytes: 10, contentType: 'video/mp4' })).rejects.toBeInstanceOf(
      InvalidVideoKeyError,
    );
    await expect(store.url('/abs.mp4', new Date())).rejects.toBeInstanceOf(InvalidVideoKeyError);
  });

  it('presigns for the time left, within the one-week limit of SigV4', async () => {
    const expiresIn = async (ms: number) =>
      new URL(await store.url('tenant/t/1.mp4', new Date(Date.now() + ms))).searchParams.get('X-Amz-Expires');
    expect(await expiresIn(30 * 24 * 3600_000)).toBe('604800');
    expect(await expiresIn(-1000)).toBe('1');
    expect(Number(await expiresIn(3600_000))).toBeGreaterThanOrEqual(3598);
  });

  it('archives a simulator result through downloadVideo', async () => {
    const sim = await startSimulator(9 * MB);
    try {
      const { taskId, videoUrl } = await simulatedResult(sim.url);
      const key = `tenant/${taskId}/1.mp4`;
      const stored = await downloadVideo({ url: videoUrl, store, key, maxBytes: 10 * MB, timeoutMs: 60_000, allowPrivate: true });
      const expected = expectedVideoBytes(taskId, 9 * MB);
      expect(stored).toEqual({ key, size: 9 * MB, sha256: sha256(expected) });
      const response = await fetch(await store.url(key, new Date(Date.now() + 60_000)));
      expect(Buffer.from(await response.arrayBuffer()).equals(expected)).toBe(true);
    } finally {
      await sim.simulator.close();
    }
  });
});
