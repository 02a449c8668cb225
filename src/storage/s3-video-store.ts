import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable } from 'node:stream';
import { assertValidVideoKey, meterBody } from './video-store.ts';
import type { VideoStore } from './video-store.ts';

/*
 * Videos in an S3 bucket (or an S3-compatible one through `endpoint`), served to browsers by
 * presigned GET. An object only becomes visible under its key once its upload completes, so a
 * failed or oversize write leaves the previous object, if any, in place.
 */

// Parts are buffered in memory: at most QUEUE_SIZE in flight plus one being filled.
const PART_BYTES = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
// SigV4 presigned URLs live at most seven days.
const MAX_PRESIGN_SECONDS = 7 * 24 * 60 * 60;

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}

export function createS3VideoStore(opts: {
  bucket: string;
  region: string | null;
  endpoint: string | null;
  forcePathStyle: boolean;
  client?: S3Client;
}): VideoStore {
  const client =
    opts.client ??
    new S3Client({
      // Credentials come from the SDK's default chain. An S3-compatible endpoint usually ignores
      // the region, but the signer needs one.
      region: opts.region ?? (opts.endpoint === null ? undefined : 'us-east-1'),
      ...(opts.endpoint === null ? {} : { endpoint: opts.endpoint }),
      forcePathStyle: opts.forcePathStyle,
    });

  return {
    kind: 's3',

    async put(key, body, { maxBytes, contentType }) {
      assertValidVideoKey(key);
      const metered = meterBody(body, maxBytes);
      // Small bodies go up in one PutObject, larger ones as a multipart upload that lib-storage
      // aborts on any failure, an oversize body included.
      const upload = new Upload({
        client,
        params: { Bucket: opts.bucket, Key: key, Body: Readable.from(metered.chunks, { objectMode: false }), ContentType: contentType },
        partSize: PART_BYTES,
        queueSize: QUEUE_SIZE,
      });
      try {
        await upload.done();
      } catch (error) {
        // Report why the body stopped, not a failure of the abort that followed it.
        throw metered.failure() ?? error;
      }
      return { key, ...metered.result() };
    },

    async head(key) {
      assertValidVideoKey(key);
      try {
        const info = await client.send(new HeadObjectCommand({ Bucket: opts.bucket, Key: key }));
        return { size: info.ContentLength ?? 0 };
      } catch (error) {
        if (isNotFound(error)) return null;
        throw error;
      }
    },

    /** The link lives at most seven days (the SigV4 limit), and no longer than the credentials that sign it. */
    async url(key, expiresAt) {
      assertValidVideoKey(key);
      const seconds = Math.floor((expiresAt.getTime() - Date.now()) / 1000);
      const expiresIn = Math.min(MAX_PRESIGN_SECONDS, Math.max(1, seconds));
      return getSignedUrl(client, new GetObjectCommand({ Bucket: opts.bucket, Key: key }), { expiresIn });
    },
  };
}
