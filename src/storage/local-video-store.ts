import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { signVideoPath } from './signed-url.ts';
import { assertValidVideoKey, meterBody } from './video-store.ts';
import type { VideoStore } from './video-store.ts';

/** Where the local store keeps writes in progress; keys cannot start with a dot, so no key names it. */
const SCRATCH_DIR = '.tmp';

/** Resolves a validated key to its file under `dir`. */
export function videoFilePath(dir: string, key: string): string {
  return join(dir, ...key.split('/'));
}

/**
 * Videos as files under `dir`, served by the gateway's own file route. A write goes to a scratch
 * file in `dir/.tmp` (same file system, so the final rename is atomic), is flushed to disk, and
 * only then renamed over the final name.
 */
export function createLocalVideoStore(opts: { dir: string; publicBaseUrl: () => string; secret: string }): VideoStore {
  const scratch = join(opts.dir, SCRATCH_DIR);
  return {
    kind: 'local',

    async put(key, body, { maxBytes }) {
      assertValidVideoKey(key);
      await mkdir(scratch, { recursive: true });
      const temp = join(scratch, `${randomUUID()}.part`);
      const metered = meterBody(body, maxBytes);
      try {
        // `flush` fsyncs before close: after a crash, a renamed file never turns out half-written.
        await pipeline(Readable.from(metered.chunks, { objectMode: false }), createWriteStream(temp, { flags: 'wx', flush: true }));
        const target = videoFilePath(opts.dir, key);
        await mkdir(dirname(target), { recursive: true });
        await rename(temp, target);
      } catch (error) {
        await rm(temp, { force: true });
        throw metered.failure() ?? error;
      }
      return { key, ...metered.result() };
    },

    async head(key) {
      assertValidVideoKey(key);
      try {
        const info = await stat(videoFilePath(opts.dir, key));
        return info.isFile() ? { size: info.size } : null;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
        throw error;
      }
    },

    async url(key, expiresAt) {
      assertValidVideoKey(key);
      return `${opts.publicBaseUrl()}${signVideoPath(opts.secret, key, expiresAt)}`;
    },
  };
}

/**
 * Removes scratch files that a crashed process left behind. Only files older than `olderThanMs`
 * go, so a write in progress (bounded by the archive timeout) is never touched.
 */
export async function sweepStaleWrites(dir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  const scratch = join(dir, SCRATCH_DIR);
  let names: string[];
  try {
    names = await readdir(scratch);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let removed = 0;
  for (const name of names) {
    const file = join(scratch, name);
    const info = await stat(file).catch(() => null);
    if (info?.isFile() && now - info.mtimeMs > olderThanMs) {
      await rm(file, { force: true });
      removed += 1;
    }
  }
  return removed;
}
