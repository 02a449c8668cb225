import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectedVideoBytes } from '../../src/simulator/video-bytes.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { DownloadError, downloadVideo } from '../../src/storage/download.ts';
import type { DownloadFailureReason } from '../../src/storage/download.ts';
import { createLocalVideoStore } from '../../src/storage/local-video-store.ts';
import { InvalidVideoKeyError } from '../../src/storage/video-store.ts';
import type { VideoStore } from '../../src/storage/video-store.ts';
import { filesUnder, listen, sha256, simulatedResult, startSimulator, tempDir } from './helpers.ts';
import type { TestServer } from './helpers.ts';

const KEY = 'tenant-1/task-1/1.mp4';
const VIDEO_BYTES = 1_500_000;
const MAX_BYTES = 2_000_000;

type Route = (req: IncomingMessage, res: ServerResponse) => void;

describe('downloadVideo', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let store: VideoStore;
  let sim: { simulator: Simulator; url: string };
  // One loopback server whose behaviour each test picks by path; it counts what reaches it.
  let server: TestServer;
  let routes: Map<string, Route>;
  let hits: string[];

  beforeAll(async () => {
    sim = await startSimulator(VIDEO_BYTES);
    server = await listen((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      hits.push(path);
      const route = routes.get(path);
      if (route) route(req, res);
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('no route');
    });
  });
  afterAll(async () => {
    await server.close();
    await sim.simulator.close();
  });
  beforeEach(async () => {
    dir = await tempDir();
    store = createLocalVideoStore({ dir: dir.path, publicBaseUrl: () => 'http://gw.test', secret: 'download-tests-secret-0123456789' });
    routes = new Map();
    hits = [];
  });
  afterEach(() => dir.remove());

  function download(url: string, overrides: Partial<Parameters<typeof downloadVideo>[0]> = {}) {
    return downloadVideo({ url, store, key: KEY, maxBytes: MAX_BYTES, timeoutMs: 10_000, allowPrivate: true, ...overrides });
  }

  async function expectFailure(promise: Promise<unknown>, reason: DownloadFailureReason, retryable: boolean): Promise<DownloadError> {
    const error = await promise.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DownloadError);
    expect({ reason: (error as DownloadError).reason, retryable: (error as DownloadError).retryable }).toEqual({ reason, retryable });
    // Nothing half-written stays behind, under the key or as a scratch file.
    expect(await filesUnder(dir.path)).toEqual([]);
    return error as DownloadError;
  }

  it('stores the exact bytes of a simulator result and reports their SHA-256', async () => {
    const { taskId, videoUrl } = await simulatedResult(sim.url);
    const stored = await download(videoUrl);
    const expected = expectedVideoBytes(taskId, VIDEO_BYTES);
    expect(stored).toEqual({ key: KEY, size: VIDEO_BYTES, sha256: sha256(expected) });
    expect((await readFile(join(dir.path, KEY))).equals(expected)).toBe(true);
  });

  it('treats a 500 from the upstream as retryable', async () => {
    const { videoUrl } = await simulatedResult(sim.url);
    sim.simulator.faults.push({ op: 'result', kind: 'http500' });
    const error = await expectFailure(download(videoUrl), 'http_status', true);
    expect(error.message).toContain('500');
  });

  it('treats 503 and 429 as retryable, 404 and 403 as final', async () => {
    for (const status of [503, 429, 404, 403]) {
      routes.set(`/status-${status}`, (_req, res) => res.writeHead(status, { 'content-type': 'video/mp4' }).end());
    }
    await expectFailure(download(`${server.url}/status-503`), 'http_status', true);
    await expectFailure(download(`${server.url}/status-429`), 'http_status', true);
    await expectFailure(download(`${server.url}/status-404`), 'http_status', false);
    await expectFailure(download(`${server.url}/status-403`), 'http_status', false);
  });

  it('treats an unknown simulator result (404) as final', async () => {
    await expectFailure(download(`${sim.url}/results/000.mp4`), 'http_status', false);
  });

  it('refuses HTML and bodies without a content type, and accepts application/octet-stream', async () => {
    routes.set('/page', (_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<html>login</html>'));
    routes.set('/untyped', (_req, res) => res.writeHead(200).end('bytes'));
    routes.set('/octets', (_req, res) => res.writeHead(200, { 'content-type': 'Application/Octet-Stream' }).end('bytes'));
    await expectFailure(download(`${server.url}/page`), 'content_type', false);
    await expectFailure(download(`${server.url}/untyped`), 'content_type', false);
    expect(await download(`${server.url}/octets`)).toMatchObject({ size: 5 });
  });

  it('refuses a body whose declared length is over the limit before reading it', async () => {
    let bodyBytesSent = 0;
    routes.set('/declared-big', (_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': MAX_BYTES + 1 });
      // Sends only a first slice: a client that waited for the body would hang, not fail fast.
      bodyBytesSent = 1024;
      res.write(Buffer.alloc(1024));
    });
    const error = await expectFailure(download(`${server.url}/declared-big`), 'too_large', false);
    expect(error.message).toContain(String(MAX_BYTES + 1));
    expect(bodyBytesSent).toBe(1024);
  });

  it('refuses a streamed body once it passes the limit', async () => {
    routes.set('/streamed-big', (_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4' }); // chunked: no length to judge up front
      const chunk = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      const pump = () => {
        while (sent <= MAX_BYTES * 2 && res.write(chunk)) sent += chunk.length;
        if (sent <= MAX_BYTES * 2) res.once('drain', pump);
        else res.end();
      };
      pump();
    });
    await expectFailure(download(`${server.url}/streamed-big`), 'too_large', false);
  });

  it('times out on a server that never answers', async () => {
    routes.set('/hang', () => {});
    const started = Date.now();
    await expectFailure(download(`${server.url}/hang`, { timeoutMs: 300 }), 'timeout', true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('times out on a body that stalls halfway, leaving no partial file', async () => {
    routes.set('/stall', (_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': 1_000_000 });
      res.write(Buffer.alloc(100_000));
    });
    await expectFailure(download(`${server.url}/stall`, { timeoutMs: 300 }), 'timeout', true);
  });

  it('treats a connection cut mid-body and a refused connection as retryable network errors', async () => {
    routes.set('/cut', (_req, res) => {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': 1_000_000 });
      res.write(Buffer.alloc(100_000), () => res.socket?.destroy());
    });
    await expectFailure(download(`${server.url}/cut`), 'network', true);
    const closed = await listen(() => {});
    await closed.close();
    await expectFailure(download(`${closed.url}/video.mp4`), 'network', true);
  });

  it('refuses schemes other than http and https', async () => {
    for (const url of ['ftp://127.0.0.1/video.mp4', 'file:///etc/passwd', 'data:video/mp4;base64,AAAA', 'not a url']) {
      await expectFailure(download(url), 'bad_scheme', false);
    }
  });

  it('follows up to three redirects, and refuses a fourth or one to another scheme', async () => {
    routes.set('/video', (_req, res) => res.writeHead(200, { 'content-type': 'video/mp4' }).end('the video'));
    routes.set('/r1', (_req, res) => res.writeHead(302, { location: '/r2' }).end());
    routes.set('/r2', (_req, res) => res.writeHead(301, { location: `${server.url}/r3` }).end());
    routes.set('/r3', (_req, res) => res.writeHead(307, { location: '/video' }).end());
    routes.set('/r0', (_req, res) => res.writeHead(308, { location: '/r1' }).end());
    routes.set('/to-file', (_req, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    await expectFailure(download(`${server.url}/r0`), 'http_status', false);
    expect(hits).toEqual(['/r0', '/r1', '/r2', '/r3']);
    await expectFailure(download(`${server.url}/to-file`), 'bad_scheme', false);
    hits.length = 0;
    expect(await download(`${server.url}/r1`)).toMatchObject({ size: 9 });
    expect(hits).toEqual(['/r1', '/r2', '/r3', '/video']);
  });

  it('refuses loopback, private and link-local targets when private URLs are not allowed, without connecting', async () => {
    routes.set('/video.mp4', (_req, res) => res.writeHead(200, { 'content-type': 'video/mp4' }).end('secret'));
    const port = new URL(server.url).port;
    const targets = [
      `http://127.0.0.1:${port}/video.mp4`,
      `http://localhost:${port}/video.mp4`, // a name that resolves to loopback
      `http://LOCALHOST:${port}/video.mp4`,
      `https://localhost:${port}/video.mp4`, // the TLS socket resolves through the same check
      `http://[::1]:${port}/video.mp4`,
      `http://[::ffff:127.0.0.1]:${port}/video.mp4`,
      `http://2130706433:${port}/video.mp4`, // 127.0.0.1 as one number
      `http://0x7f.1:${port}/video.mp4`,
      'http://10.0.0.1/video.mp4',
      'http://169.254.169.254/latest/meta-data/',
      'https://192.168.0.10/video.mp4',
      'http://[fd00::1]/video.mp4',
      'http://0.0.0.0/video.mp4',
    ];
    for (const url of targets) {
      const error = await expectFailure(download(url, { allowPrivate: false }), 'private_address', false);
      expect(error.message, url).toMatch(/not a public address/);
    }
    expect(hits).toEqual([]);
    // The same server is reachable once private URLs are allowed: the refusals above were the policy.
    expect(await download(`http://localhost:${port}/video.mp4`)).toMatchObject({ size: 6 });
  });

  it('checks the key before fetching anything', async () => {
    await expect(download(`${server.url}/video.mp4`, { key: '../escape.mp4' })).rejects.toBeInstanceOf(InvalidVideoKeyError);
    expect(hits).toEqual([]);
  });
});
