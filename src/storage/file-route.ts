import type { Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { parseRange } from '../http/range.ts';
import { sendJson } from '../http/respond.ts';
import { videoFilePath } from './local-video-store.ts';
import { VIDEO_PATH_PREFIX, verifyVideoSignature } from './signed-url.ts';
import { isValidVideoKey } from './video-store.ts';

/*
 * `GET|HEAD /files/videos/<key>?expires=&sig=`: serves locally stored videos by signed link, with
 * single byte ranges so that browsers can seek. A request for several ranges gets the whole file
 * with 200 (RFC 9110 allows ignoring Range; players only ever ask for one range). Validators
 * (ETag, Last-Modified) let a browser revalidate its cached copy (304) and resume a download
 * safely (If-Range: a range of a file that has since been replaced is never spliced on).
 */

/**
 * `path` is the request's pathname with any PUBLIC_BASE_URL prefix already stripped. Rejects only
 * on an unexpected file system error before anything was sent; the caller answers 500 then.
 */
type VideoFileHandler = (req: IncomingMessage, res: ServerResponse, path: string) => Promise<void>;

export function isVideoFilePath(path: string): boolean {
  return path.startsWith(VIDEO_PATH_PREFIX) && path.length > VIDEO_PATH_PREFIX.length;
}

/** The entity tags listed in an If-None-Match or If-Range value, `*` included. */
function entityTags(header: string): string[] {
  return header.trim() === '*' ? ['*'] : (header.match(/(?:W\/)?"[^"]*"/g) ?? []);
}

/** RFC 9110 §13.1.2 and §13.1.3, for GET and HEAD: is the client's copy still current? */
function isNotModified(req: IncomingMessage, etag: string, lastModified: Date): boolean {
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    // Weak comparison: W/"x" matches "x".
    return entityTags(ifNoneMatch).some((tag) => tag === '*' || tag.replace(/^W\//, '') === etag);
  }
  const since = Date.parse(req.headers['if-modified-since'] ?? '');
  return !Number.isNaN(since) && lastModified.getTime() <= since;
}

/** RFC 9110 §13.1.5: a Range applies only while If-Range (if any) names the current file. */
function rangeStillApplies(req: IncomingMessage, etag: string, lastModified: Date): boolean {
  const header = req.headers['if-range'];
  if (header === undefined) return true;
  if (typeof header !== 'string') return false; // repeated: not a validator we can trust
  const ifRange = header.trim();
  // Strong comparison for an entity tag; an exact match for a date.
  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) return ifRange === etag;
  return Date.parse(ifRange) === lastModified.getTime();
}

function isMissingFile(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

function validatorsOf(info: Stats): { etag: string; lastModified: Date } {
  // A replaced video is a new file (the store renames a finished write into place): a new
  // inode, so a new tag even within the same millisecond and at the same size.
  const etag = `"${info.ino.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}-${info.size.toString(16)}"`;
  return { etag, lastModified: new Date(Math.floor(info.mtimeMs / 1000) * 1000) };
}

export function createVideoFileHandler(opts: { dir: string; secret: string; now?: () => Date }): VideoFileHandler {
  const now = opts.now ?? (() => new Date());

  return async function serveVideoFile(req, res, path) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: 'method_not_allowed', message: 'Use GET or HEAD.' }, { allow: 'GET, HEAD' });
      return;
    }
    const key = path.slice(VIDEO_PATH_PREFIX.length);
    const query = new URL(req.url ?? '/', 'http://gateway').searchParams;
    const expires = query.get('expires');
    const at = now();
    // The signature is checked before the file system is touched: a refused link reveals nothing.
    if (!isVideoFilePath(path) || !verifyVideoSignature(opts.secret, key, expires, query.get('sig'), at)) {
      sendJson(res, 403, { error: 'forbidden', message: 'The link is invalid or has expired.' }, { 'cache-control': 'no-store' });
      return;
    }
    if (!isValidVideoKey(key)) {
      sendJson(res, 404, { error: 'not_found', message: 'No such video.' });
      return;
    }

    let file: FileHandle;
    try {
      file = await open(videoFilePath(opts.dir, key), 'r');
    } catch (error) {
      if (!isMissingFile(error)) throw error;
      sendJson(res, 404, { error: 'not_found', message: 'No such video.' });
      return;
    }
    let streaming = false;
    try {
      // Size from the open descriptor: a concurrent replace (a rename) cannot change what we send.
      const info = await file.stat();
      if (!info.isFile()) {
        sendJson(res, 404, { error: 'not_found', message: 'No such video.' });
        return;
      }
      const size = info.size;
      const { etag, lastModified } = validatorsOf(info);
      const maxAge = Math.max(0, Number(expires) - Math.floor(at.getTime() / 1000));
      const common = {
        etag,
        'last-modified': lastModified.toUTCString(),
        'cache-control': `private, max-age=${maxAge}`,
        'x-content-type-options': 'nosniff',
      };
      if (isNotModified(req, etag, lastModified)) {
        res.writeHead(304, common);
        res.end();
        return;
      }
      const range = rangeStillApplies(req, etag, lastModified) ? parseRange(req.headers.range, size) : null;
      if (range === 'unsatisfiable') {
        res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': 0 });
        res.end();
        return;
      }
      const { start, end } = range ?? { start: 0, end: size - 1 };
      res.writeHead(range ? 206 : 200, {
        ...common,
        'content-type': 'video/mp4',
        'accept-ranges': 'bytes',
        'content-length': end - start + 1,
        ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
      });
      if (req.method === 'HEAD' || size === 0) {
        res.end();
        return;
      }
      streaming = true;
      // The stream owns the handle from here and closes it when it ends or is destroyed; a client
      // that goes away mid-transfer is not an error worth reporting.
      await pipeline(file.createReadStream({ start, end }), res).catch(() => {});
    } finally {
      if (!streaming) await file.close();
    }
  };
}
