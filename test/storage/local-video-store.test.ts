import { existsSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalVideoStore, sweepStaleWrites } from '../../src/storage/local-video-store.ts';
import { verifyVideoSignature } from '../../src/storage/signed-url.ts';
import { InvalidVideoKeyError, VideoTooLargeError } from '../../src/storage/video-store.ts';
import type { VideoStore } from '../../src/storage/video-store.ts';
import { bodyOf, filesUnder, patternBody, patternSha256, sha256, tempDir } from './helpers.ts';

const SECRET = 'local-store-secret-0123456789abcdef';
const KEY = 'tenant-1/task-1/1.mp4';

describe('local video store', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let store: VideoStore;

  beforeEach(async () => {
    dir = await tempDir();
    store = createLocalVideoStore({ dir: dir.path, publicBaseUrl: () => 'https://gw.example/prefix', secret: SECRET });
  });
  afterEach(() => dir.remove());

  it('streams a 50 MB body to a file and reports its size and SHA-256', async () => {
    const size = 50 * 1024 * 1024;
    const stored = await store.put(KEY, patternBody(size), { maxBytes: size, contentType: 'video/mp4' });
    expect(stored).toEqual({ key: KEY, size, sha256: patternSha256(size) });
    expect(sha256(await readFile(join(dir.path, KEY)))).toBe(stored.sha256);
    expect(await store.head(KEY)).toEqual({ size });
    expect(await filesUnder(dir.path)).toEqual([KEY]);
  });

  it('refuses a body over maxBytes and leaves neither the file nor a scratch file', async () => {
    await expect(
      store.put(KEY, patternBody(3 * 1024 * 1024), { maxBytes: 2 * 1024 * 1024 + 1, contentType: 'video/mp4' }),
    ).rejects.toBeInstanceOf(VideoTooLargeError);
    expect(await filesUnder(dir.path)).toEqual([]);
    expect(await store.head(KEY)).toBeNull();
  });

  it('stops reading the body as soon as the limit is passed', async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield Buffer.alloc(1024);
      }
    }
    await expect(store.put(KEY, endless(), { maxBytes: 10 * 1024, contentType: 'video/mp4' })).rejects.toBeInstanceOf(VideoTooLargeError);
    expect(pulled).toBe(11);
  });

  it('accepts a body of exactly maxBytes', async () => {
    const stored = await store.put(KEY, bodyOf('0123456789'), { maxBytes: 10, contentType: 'video/mp4' });
    expect(stored.size).toBe(10);
  });

  it('replaces a key atomically: readers see the old file until the new one is complete', async () => {
    await store.put(KEY, bodyOf('old video'), { maxBytes: 1000, contentType: 'video/mp4' });

    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let parked!: () => void;
    const atGate = new Promise<void>((resolve) => (parked = resolve));
    async function* slowBody(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('new ');
      parked();
      await gate;
      yield Buffer.from('video, longer');
    }
    const writing = store.put(KEY, slowBody(), { maxBytes: 1000, contentType: 'video/mp4' });
    await atGate;
    expect(await readFile(join(dir.path, KEY), 'utf8')).toBe('old video');
    release();
    await writing;
    expect(await readFile(join(dir.path, KEY), 'utf8')).toBe('new video, longer');
    expect(await filesUnder(dir.path)).toEqual([KEY]);
  });

  it('keeps the old file when a replacing write fails, and rethrows the body error', async () => {
    await store.put(KEY, bodyOf('old video'), { maxBytes: 1000, contentType: 'video/mp4' });
    const broken = new Error('upstream went away');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('partial');
      throw broken;
    }
    await expect(store.put(KEY, failing(), { maxBytes: 1000, contentType: 'video/mp4' })).rejects.toBe(broken);
    expect(await readFile(join(dir.path, KEY), 'utf8')).toBe('old video');
    expect(await filesUnder(dir.path)).toEqual([KEY]);
  });

  it('refuses keys that could escape the directory or are not plain', async () => {
    for (const key of [
      '../x.mp4',
      'a/../../x.mp4',
      '/etc/passwd',
      'a//b.mp4',
      'a/./b.mp4',
      '.tmp/x',
      'a/.hidden',
      'a b.mp4',
      'a\\b.mp4',
      'a/b.mp4/',
      '',
      'é.mp4',
      'a%2F..',
    ]) {
      await expect(store.put(key, bodyOf('x'), { maxBytes: 10, contentType: 'video/mp4' }), key).rejects.toBeInstanceOf(
        InvalidVideoKeyError,
      );
      await expect(store.head(key), key).rejects.toBeInstanceOf(InvalidVideoKeyError);
    }
    expect(await filesUnder(dir.path)).toEqual([]);
  });

  it('head is null for a missing key', async () => {
    expect(await store.head('tenant-1/none/1.mp4')).toBeNull();
  });

  it('builds signed URLs on the public base URL, prefix included', async () => {
    const expiresAt = new Date('2030-01-01T00:00:00Z');
    const url = new URL(await store.url(KEY, expiresAt));
    expect(url.origin).toBe('https://gw.example');
    expect(url.pathname).toBe(`/prefix/files/videos/${KEY}`);
    expect(url.searchParams.get('expires')).toBe(String(expiresAt.getTime() / 1000));
    expect(
      verifyVideoSignature(SECRET, KEY, url.searchParams.get('expires'), url.searchParams.get('sig'), new Date('2029-12-31T23:59:59Z')),
    ).toBe(true);
  });
});

describe('sweepStaleWrites', () => {
  it('removes scratch files older than the bound and keeps fresh ones and stored videos', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sweep-'));
    mkdirSync(join(dir, '.tmp'));
    mkdirSync(join(dir, 't'));
    writeFileSync(join(dir, '.tmp', 'old.part'), 'x');
    writeFileSync(join(dir, '.tmp', 'fresh.part'), 'y');
    writeFileSync(join(dir, 't', '1.mp4'), 'z');
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(join(dir, '.tmp', 'old.part'), hourAgo, hourAgo);
    expect(await sweepStaleWrites(dir, 60_000)).toBe(1);
    expect(existsSync(join(dir, '.tmp', 'old.part'))).toBe(false);
    expect(existsSync(join(dir, '.tmp', 'fresh.part'))).toBe(true);
    expect(existsSync(join(dir, 't', '1.mp4'))).toBe(true);
    expect(await sweepStaleWrites(join(dir, 'missing'), 60_000)).toBe(0);
  });
});
