import { readFile } from 'node:fs/promises';

/*
 * The real MP4 files the simulator serves as results by default: one per aspect ratio and per
 * duration the upstream allows, made by scripts/make-sandbox-videos.sh (see videos/README.md).
 */

export type SampleAspectRatio = '16:9' | '9:16' | '1:1';

export const SAMPLE_ASPECT_RATIOS: readonly SampleAspectRatio[] = ['16:9', '9:16', '1:1'];
export const SAMPLE_DURATIONS: readonly number[] = [3, 4, 5, 6, 7, 8, 9, 10];

const loaded = new Map<string, Promise<Buffer>>();

/** The file for a ratio and a whole number of seconds (clamped to 3–10). */
export function sampleVideoUrl(aspectRatio: SampleAspectRatio, seconds: number): URL {
  const clamped = Math.min(10, Math.max(3, Math.round(seconds)));
  return new URL(`./videos/${aspectRatio.replace(':', 'x')}-${clamped}s.mp4`, import.meta.url);
}

/** The bytes of that file, read once per process (24 files of at most 200 KB). */
export function sampleVideo(aspectRatio: SampleAspectRatio, seconds: number): Promise<Buffer> {
  const url = sampleVideoUrl(aspectRatio, seconds);
  let bytes = loaded.get(url.href);
  if (bytes === undefined) {
    bytes = readFile(url);
    // A failed read is not remembered, so the next request tries again.
    bytes.catch(() => loaded.delete(url.href));
    loaded.set(url.href, bytes);
  }
  return bytes;
}
