import { lookup as dnsLookup } from 'node:dns';
import type { LookupAddress } from 'node:dns';
import { request as httpRequest } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import { isPublicAddress } from './public-address.ts';
import { assertValidVideoKey, VideoTooLargeError } from './video-store.ts';
import type { StoredObject, VideoStore } from './video-store.ts';

/*
 * Copies a result video from the upstream's expiring URL into our store, streamed and capped.
 *
 * The URL comes from outside, so unless ALLOW_PRIVATE_URLS is on, only public addresses are
 * fetched. The check sits in the socket's own DNS lookup: the address judged is the address the
 * socket then connects to, so a name that resolves differently the second time (DNS rebinding)
 * gains nothing. IP literals skip DNS and are judged before any connection. Each connection is
 * new (no agent pool), so no socket opened under other rules is ever reused. Redirects are
 * followed up to MAX_REDIRECTS, each target checked the same way.
 */

export type DownloadFailureReason = 'private_address' | 'bad_scheme' | 'http_status' | 'content_type' | 'too_large' | 'timeout' | 'network';

export class DownloadError extends Error {
  readonly reason: DownloadFailureReason;
  /** True when the same download may succeed later: 5xx, 429, timeouts and network errors. */
  readonly retryable: boolean;
  constructor(reason: DownloadFailureReason, message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DownloadError';
    this.reason = reason;
    this.retryable = retryable;
  }
}

const MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

function refusedAddress(host: string, address: string): DownloadError {
  return new DownloadError('private_address', `Refusing to fetch from ${host}: ${address} is not a public address.`, false);
}

/** dns.lookup that fails when any address of the name is not public. */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, '');
    // Every address must pass, not only the first: the socket may try them all (happy eyeballs).
    const bad = addresses.find((entry) => !isPublicAddress(entry.address));
    if (bad) return callback(refusedAddress(hostname, bad.address), '');
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '');
    if (options.all) callback(null, addresses);
    else callback(null, first.address, first.family);
  });
};

function checkTarget(url: URL, allowPrivate: boolean): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DownloadError('bad_scheme', `Only http and https URLs are fetched, not ${url.protocol}`, false);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!allowPrivate && isIP(host) !== 0 && !isPublicAddress(host)) throw refusedAddress(url.host, host);
}

function transportError(error: unknown, signal: AbortSignal): DownloadError {
  if (error instanceof DownloadError) return error;
  if (signal.aborted) return new DownloadError('timeout', 'The download did not finish in time.', true, { cause: error });
  const detail = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new DownloadError('network', `The download failed: ${detail}`, true, { cause: error });
}

function get(url: URL, allowPrivate: boolean, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'GET',
      agent: false,
      signal,
      ...(allowPrivate ? {} : { lookup: publicOnlyLookup }),
      // identity: Node does not decompress, and a compressed body would be stored compressed.
      headers: { accept: 'video/*, application/octet-stream', 'accept-encoding': 'identity', 'user-agent': 'omni-gateway' },
    });
    request.once('response', resolve);
    // `on`, not `once`: an abort after the response arrived must not become an unhandled error.
    request.on('error', (error) => reject(transportError(error, signal)));
    request.end();
  });
}

async function openFollowingRedirects(start: URL, allowPrivate: boolean, signal: AbortSignal): Promise<IncomingMessage> {
  let url = start;
  for (let redirects = 0; ; redirects++) {
    checkTarget(url, allowPrivate);
    const response = await get(url, allowPrivate, signal);
    const location = response.headers.location;
    if (!REDIRECT_STATUSES.has(response.statusCode ?? 0) || location === undefined) return response;
    response.destroy();
    if (redirects === MAX_REDIRECTS) {
      throw new DownloadError('http_status', `More than ${MAX_REDIRECTS} redirects.`, false);
    }
    try {
      url = new URL(location, url);
    } catch {
      throw new DownloadError('http_status', 'A redirect pointed to an invalid URL.', false);
    }
  }
}

function checkResponse(response: IncomingMessage, maxBytes: number): void {
  const status = response.statusCode ?? 0;
  if (status < 200 || status > 299) {
    const retryable = status >= 500 || status === 429;
    throw new DownloadError('http_status', `The video URL answered HTTP ${status}.`, retryable);
  }
  const type = (response.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (!type.startsWith('video/') && type !== 'application/octet-stream') {
    throw new DownloadError('content_type', `The video URL answered with content type "${type}", not a video.`, false);
  }
  const declared = response.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    throw new DownloadError('too_large', `The video is ${declared} bytes, over the limit of ${maxBytes}.`, false);
  }
}

async function* bodyOf(response: IncomingMessage, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  try {
    // A connection that closes before the declared or chunked end makes this throw ("aborted").
    for await (const chunk of response) yield chunk as Buffer;
  } catch (error) {
    throw transportError(error, signal);
  } finally {
    response.destroy();
  }
}

/**
 * Fetches `url` and stores its body under `key`. Rejects with DownloadError for anything about
 * the transfer; errors of the store itself (disk, S3) pass through unchanged. `timeoutMs` bounds
 * the whole transfer from the upstream, redirects included.
 */
export async function downloadVideo(opts: {
  url: string;
  store: VideoStore;
  key: string;
  maxBytes: number;
  timeoutMs: number;
  allowPrivate: boolean;
}): Promise<StoredObject> {
  assertValidVideoKey(opts.key);
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new DownloadError('bad_scheme', 'The video URL is not a valid URL.', false);
  }
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const response = await openFollowingRedirects(url, opts.allowPrivate, signal);
  try {
    checkResponse(response, opts.maxBytes);
  } catch (error) {
    response.destroy();
    throw error;
  }
  try {
    return await opts.store.put(opts.key, bodyOf(response, signal), { maxBytes: opts.maxBytes, contentType: 'video/mp4' });
  } catch (error) {
    if (error instanceof VideoTooLargeError) {
      throw new DownloadError('too_large', `The video is over the limit of ${opts.maxBytes} bytes.`, false, { cause: error });
    }
    throw error;
  } finally {
    response.destroy();
  }
}
