import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVideoFileHandler, isVideoFilePath } from '../../src/storage/file-route.ts';
import { createLocalVideoStore } from '../../src/storage/local-video-store.ts';
import { listen, tempDir } from './helpers.ts';
import type { TestServer } from './helpers.ts';

const SECRET = 'file-route-secret-0123456789abcdef';
const KEY = 'tenant-a/task-b/1.mp4';
const SIZE = 300_000;
const NOW = new Date('2030-01-01T00:00:00Z');
const EXPIRES_AT = new Date('2030-01-01T01:00:00Z');

describe('video file route', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: TestServer;
  let store: ReturnType<typeof createLocalVideoStore>;
  let signedUrl: (key?: string, expiresAt?: Date) => Promise<string>;
  const video = randomBytes(SIZE);

  beforeAll(async () => {
    dir = await tempDir();
    const handler = createVideoFileHandler({ dir: dir.path, secret: SECRET, now: () => NOW });
    server = await listen((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (!isVideoFilePath(path)) {
        res.writeHead(418).end();
        return;
      }
      handler(req, res, path).catch(() => res.destroy());
    });
    store = createLocalVideoStore({ dir: dir.path, publicBaseUrl: () => server.url, secret: SECRET });
    await store.put(
      KEY,
      (async function* () {
        yield video;
      })(),
      { maxBytes: SIZE, contentType: 'video/mp4' },
    );
    signedUrl = (key = KEY, expiresAt = EXPIRES_AT) => store.url(key, expiresAt);
  });
  afterAll(async () => {
    await server.close();
    await dir.remove();
  });

  it('serves the whole file with the video headers', async () => {
    const response = await fetch(await signedUrl());
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('video/mp4');
    expect(response.headers.get('accept-ranges')).toBe('bytes');
    expect(response.headers.get('content-length')).toBe(String(SIZE));
    expect(response.headers.get('cache-control')).toBe('private, max-age=3600');
    expect(Buffer.from(await response.arrayBuffer()).equals(video)).toBe(true);
  });

  it.each([
    ['bytes=10-99', 10, 99],
    ['bytes=100-', 100, SIZE - 1],
    ['bytes=-50', SIZE - 50, SIZE - 1],
    ['bytes=0-0', 0, 0],
    [`bytes=${SIZE - 10}-${SIZE + 1000}`, SIZE - 10, SIZE - 1],
    [`bytes=-${SIZE * 2}`, 0, SIZE - 1],
  ])('answers Range %s with 206 and exactly that slice', async (range, start, end) => {
    const response = await fetch(await signedUrl(), { headers: { range } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/${SIZE}`);
    expect(response.headers.get('content-length')).toBe(String(end - start + 1));
    expect(response.headers.get('content-type')).toBe('video/mp4');
    expect(Buffer.from(await response.arrayBuffer()).equals(video.subarray(start, end + 1))).toBe(true);
  });

  it.each([`bytes=${SIZE}-`, `bytes=${SIZE + 5}-${SIZE + 10}`, 'bytes=-0'])('answers unsatisfiable Range %s with 416', async (range) => {
    const response = await fetch(await signedUrl(), { headers: { range } });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe(`bytes */${SIZE}`);
    expect((await response.arrayBuffer()).byteLength).toBe(0);
  });

  it.each(['bytes=0-1,5-9', 'bytes=9-1', 'items=0-5', 'bytes=abc'])(
    'ignores Range %s it does not serve and sends everything',
    async (range) => {
      const response = await fetch(await signedUrl(), { headers: { range } });
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer()).equals(video)).toBe(true);
    },
  );

  it('answers HEAD with the headers and no body', async () => {
    const response = await fetch(await signedUrl(), { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(SIZE));
    expect(response.headers.get('content-type')).toBe('video/mp4');
    expect((await response.arrayBuffer()).byteLength).toBe(0);
    const ranged = await fetch(await signedUrl(), { method: 'HEAD', headers: { range: 'bytes=10-19' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 10-19/${SIZE}`);
  });

  it('revalidates a cached copy: 304 without a body for its ETag or a later If-Modified-Since, 200 otherwise', async () => {
    const first = await fetch(await signedUrl());
    const etag = first.headers.get('etag') ?? '';
    const lastModified = first.headers.get('last-modified') ?? '';
    expect(etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    expect(Number.isNaN(Date.parse(lastModified))).toBe(false);
    await first.arrayBuffer();
    expect((await fetch(await signedUrl(), { method: 'HEAD' })).headers.get('etag')).toBe(etag);

    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const cached = await fetch(await signedUrl(), { headers: { 'if-none-match': ifNoneMatch } });
      expect(cached.status, ifNoneMatch).toBe(304);
      expect(cached.headers.get('etag')).toBe(etag);
      expect(cached.headers.get('cache-control')).toBe('private, max-age=3600');
      expect((await cached.arrayBuffer()).byteLength).toBe(0);
    }
    const changed = await fetch(await signedUrl(), { headers: { 'if-none-match': '"something-else"' } });
    expect(changed.status).toBe(200);
    expect(Buffer.from(await changed.arrayBuffer()).equals(video)).toBe(true);

    const notSince = await fetch(await signedUrl(), { headers: { 'if-modified-since': lastModified } });
    expect(notSince.status).toBe(304);
    await notSince.arrayBuffer();
    const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString();
    const since = await fetch(await signedUrl(), { headers: { 'if-modified-since': earlier } });
    expect(since.status).toBe(200);
    expect((await since.arrayBuffer()).byteLength).toBe(SIZE);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    const both = await fetch(await signedUrl(), { headers: { 'if-none-match': '"stale"', 'if-modified-since': lastModified } });
    expect(both.status).toBe(200);
    await both.arrayBuffer();
  });

  it('resumes with If-Range only while the file is the same; a replaced video is sent whole', async () => {
    const key = 'tenant-a/task-b/3.mp4';
    const before = randomBytes(1_000);
    await store.put(
      key,
      (async function* () {
        yield before;
      })(),
      { maxBytes: SIZE, contentType: 'video/mp4' },
    );
    const url = await signedUrl(key);
    const first = await fetch(url);
    const etag = first.headers.get('etag') ?? '';
    const lastModified = first.headers.get('last-modified') ?? '';
    await first.arrayBuffer();

    const resumed = await fetch(url, { headers: { range: 'bytes=500-', 'if-range': etag } });
    expect(resumed.status).toBe(206);
    expect(Buffer.from(await resumed.arrayBuffer()).equals(before.subarray(500))).toBe(true);
    const byDate = await fetch(url, { headers: { range: 'bytes=500-', 'if-range': lastModified } });
    expect(byDate.status).toBe(206);
    await byDate.arrayBuffer();
    // A weak tag never satisfies If-Range (strong comparison).
    const weak = await fetch(url, { headers: { range: 'bytes=500-', 'if-range': `W/${etag}` } });
    expect(weak.status).toBe(200);
    expect((await weak.arrayBuffer()).byteLength).toBe(1_000);

    // The same key written again, same size: a new tag, and the old tag's range is not applied.
    const after = randomBytes(1_000);
    await store.put(
      key,
      (async function* () {
        yield after;
      })(),
      { maxBytes: SIZE, contentType: 'video/mp4' },
    );
    const stale = await fetch(url, { headers: { range: 'bytes=500-', 'if-range': etag } });
    expect(stale.status).toBe(200);
    expect(stale.headers.get('etag')).not.toBe(etag);
    expect(Buffer.from(await stale.arrayBuffer()).equals(after)).toBe(true);
    const revalidated = await fetch(url, { headers: { 'if-none-match': etag } });
    expect(revalidated.status).toBe(200);
    expect(Buffer.from(await revalidated.arrayBuffer()).equals(after)).toBe(true);
  });

  async function expectForbidden(url: string): Promise<void> {
    const response = await fetch(url);
    expect(response.status).toBe(403);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('content-length')).not.toBe(String(SIZE));
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.error).toBe('forbidden');
    expect(JSON.stringify(body)).not.toMatch(/size|mp4|bytes/i);
  }

  it('refuses a signature with one character changed', async () => {
    const url = new URL(await signedUrl());
    const sig = url.searchParams.get('sig') ?? '';
    url.searchParams.set('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`);
    await expectForbidden(url.href);
  });

  it('refuses an expired link, a missing signature or expiry, and a link signed for another key', async () => {
    await expectForbidden(await signedUrl(KEY, new Date(NOW.getTime() - 1000)));
    const url = new URL(await signedUrl());
    const noSig = new URL(url);
    noSig.searchParams.delete('sig');
    await expectForbidden(noSig.href);
    const noExpiry = new URL(url);
    noExpiry.searchParams.delete('expires');
    await expectForbidden(noExpiry.href);
    const longer = new URL(url);
    longer.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 86_400));
    await expectForbidden(longer.href);
    const otherKey = new URL(await signedUrl('tenant-a/task-b/2.mp4'));
    otherKey.pathname = url.pathname;
    await expectForbidden(otherKey.href);
  });

  it('answers 404 for a validly signed link to a missing file, and 405 for other methods', async () => {
    const missing = await fetch(await signedUrl('tenant-a/task-b/9.mp4'));
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toBe('not_found');
    const post = await fetch(await signedUrl(), { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('recognises only paths under /files/videos/', () => {
    expect(isVideoFilePath('/files/videos/a/b/1.mp4')).toBe(true);
    expect(isVideoFilePath('/files/videos/')).toBe(false);
    expect(isVideoFilePath('/files/video/a.mp4')).toBe(false);
    expect(isVideoFilePath('/graphql')).toBe(false);
  });
});
