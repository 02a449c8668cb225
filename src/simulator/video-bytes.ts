import { createHash } from 'node:crypto';

/*
 * The result of a task when a test asks for a given size (`videoBytes`): a valid MP4 box header,
 * then bytes derived from the task id and their position, so any range can be generated on its
 * own and a test can predict it. Not playable; without `videoBytes` the simulator serves a real
 * MP4 (sample-videos.ts).
 */

const CHUNK_BYTES = 64 * 1024;
const HEADER_BYTES = 32;

/** The smallest result that holds the MP4 header. */
export const MIN_VIDEO_BYTES = HEADER_BYTES;
/** The mdat box records its size in 32 bits. */
export const MAX_VIDEO_BYTES = 0xffffffff;

function seedOf(taskId: string): number {
  return createHash('sha256').update(taskId).digest().readUInt32LE(0);
}

// murmur3's finalizer: cheap, well mixed, and addressable by position for Range requests.
function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mp4Header(size: number): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(24, 0);
  header.write('ftypisom', 4, 'latin1');
  header.writeUInt32BE(0x200, 12);
  header.write('isommp41', 16, 'latin1');
  // One mdat box covers the rest, so the file is a structurally valid MP4 box sequence.
  header.writeUInt32BE(size - 24, 24);
  header.write('mdat', 28, 'latin1');
  return header;
}

/** Bytes [start, end) of the simulated result video of a task. */
function videoSlice(seed: number, size: number, start: number, end: number): Buffer {
  const firstWord = Math.floor(start / 4);
  const words = Math.ceil(end / 4) - firstWord;
  const view = Buffer.allocUnsafe(words * 4);
  for (let i = 0; i < words; i++) view.writeUInt32LE(mix32(seed ^ Math.imul(firstWord + i, 0x9e3779b1)), i * 4);
  const out = view.subarray(start - firstWord * 4, start - firstWord * 4 + (end - start));
  if (start < HEADER_BYTES) mp4Header(size).copy(out, 0, start, Math.min(end, HEADER_BYTES));
  return out;
}

/** The exact bytes the simulator serves for a task's result of `size` bytes (for tests). */
export function expectedVideoBytes(taskId: string, size: number): Buffer {
  return videoSlice(seedOf(taskId), size, 0, size);
}

/** Bytes [start, end) of a task's result of `size` bytes, in chunks, so none is built whole. */
export function* videoChunks(taskId: string, size: number, start: number, end: number): Generator<Buffer> {
  const seed = seedOf(taskId);
  for (let at = start; at < end; at += CHUNK_BYTES) yield videoSlice(seed, size, at, Math.min(end, at + CHUNK_BYTES));
}
