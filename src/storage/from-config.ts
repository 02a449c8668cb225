import type { VideoStoreConfig } from '../config.ts';
import { createLocalVideoStore } from './local-video-store.ts';
import { createS3VideoStore } from './s3-video-store.ts';
import type { VideoStore } from './video-store.ts';

/** The store VIDEO_STORE names, or null for `none`. */
export function storeFromConfig(config: VideoStoreConfig, opts: { publicBaseUrl: () => string; secret: string }): VideoStore | null {
  switch (config.kind) {
    case 'none':
      return null;
    case 'local':
      return createLocalVideoStore({ dir: config.dir, publicBaseUrl: opts.publicBaseUrl, secret: opts.secret });
    case 's3':
      return createS3VideoStore({
        bucket: config.bucket,
        region: config.region,
        endpoint: config.endpoint,
        forcePathStyle: config.forcePathStyle,
      });
  }
}
