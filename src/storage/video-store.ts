import { createHash } from 'node:crypto';

/*
 * The contract shared by the local and the S3 video store. Keys look like
 * `<tenantId>/<taskId>/<index>.mp4`; the same rule is enforced by every store and by the file
 * route, so a key can never name a path outside the store or a store's own scratch files.
 */

export type StoredObject = { key: string; size: number; sha256: string };

export type VideoStore = {
  readonly kind: 'local' | 's3';
  /**
   * Streams `body` into the store under `key` without buffering it whole; computes size and
   * SHA-256 (hex) while streaming; aborts, removes any partial object and throws
   * VideoTooLargeError once more than maxBytes arrive. Writing a key again replaces it atomically,
   * so a crash mid-write never leaves a half object under the final key. An error thrown by
   * `body` itself is rethrown unchanged after the cleanup.
   */
  put(key: string, body: AsyncIterable<Uint8Array>, opts: { maxBytes: number; contentType: string }): Promise<StoredObject>;
  /** Metadata of a stored object, or null. */
  head(key: string): Promise<{ size: number } | null>;
  /** An absolute URL a browser can GET until `expiresAt`. Local: the gateway's signed URL; S3: a presigned GET. */
  url(key: string, expiresAt: Date): Promise<string>;
};

export class VideoTooLargeError extends Error {
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`The video is larger than the limit of ${maxBytes} bytes.`);
    this.name = 'VideoTooLargeError';
    this.maxBytes = maxBytes;
  }
}

export class InvalidVideoKeyError extends Error {
  constructor(key: string) {
    super(
      `Invalid video key ${JSON.stringify(key.slice(0, 200))}: use segments of [A-Za-z0-9._-] separated by "/", none starting with ".".`,
    );
    this.name = 'InvalidVideoKeyError';
  }
}

// No segment may start with a dot: that rules out "." and ".." and keeps the local store's
// `.tmp/` scratch directory unreachable through any key.
const KEY_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;
const MAX_KEY_LENGTH = 512;

export function isValidVideoKey(key: string): boolean {
  return key.length <= MAX_KEY_LENGTH && KEY_PATTERN.test(key);
}

export function assertValidVideoKey(key: string): void {
  if (!isValidVideoKey(key)) throw new InvalidVideoKeyError(key);
}

type MeteredBody = {
  /** The body, passed through; throws VideoTooLargeError as soon as more than maxBytes went by. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Size and SHA-256 of everything that went through; meaningful once `chunks` is exhausted. */
  result(): { size: number; sha256: string };
  /**
   * The first error `chunks` threw (the size limit or the source's own), if any. A store's
   * cleanup can fail in turn (e.g. aborting a multipart upload); this is the error to report.
   */
  failure(): unknown;
};

export function meterBody(body: AsyncIterable<Uint8Array>, maxBytes: number): MeteredBody {
  const hash = createHash('sha256');
  let size = 0;
  let digest: string | null = null;
  let failed: { error: unknown } | null = null;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of body) {
        size += chunk.byteLength;
        if (size > maxBytes) throw new VideoTooLargeError(maxBytes);
        hash.update(chunk);
        yield chunk;
      }
    } catch (error) {
      failed ??= { error };
      throw error;
    }
    digest = hash.digest('hex');
  }
  return {
    chunks: chunks(),
    result() {
      if (digest === null) throw new Error('the body has not been read to its end');
      return { size, sha256: digest };
    },
    failure: () => failed?.error,
  };
}
