import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedVideoBytes } from '../../src/simulator/video-bytes.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { sha256, simulatedResult, startSimulator, tempDir } from './helpers.ts';

/*
 * Archiving a 200 MB result must stream: resident memory may grow by a few buffers, never by the
 * video. The download runs in a process of its own (archive-once.ts), whose kernel-measured peak
 * RSS is compared with its RSS just before the download.
 */

const VIDEO_BYTES = 200 * 1024 * 1024;
const MB = 1024 * 1024;
// Measured at about 40 MB for 200 MB and for 600 MB alike: young-generation garbage and allocator
// slack, not the video. Well under the 200 MB a buffering copy would add.
const MAX_RSS_GROWTH = 80 * MB;
const script = fileURLToPath(new URL('./archive-once.ts', import.meta.url));

type ArchiveReport = { size: number; sha256: string; seconds: number; rssBefore: number; peakRss: number };

describe('downloadVideo memory', () => {
  let sim: { simulator: Simulator; url: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    sim = await startSimulator(VIDEO_BYTES);
    dir = await tempDir();
  });
  afterAll(async () => {
    await sim.simulator.close();
    await dir.remove();
  });

  it('archives a 200 MB video with resident memory growing far less than the video', { timeout: 120_000 }, async () => {
    const { taskId, videoUrl } = await simulatedResult(sim.url);
    const { stdout } = await promisify(execFile)(process.execPath, [script, videoUrl, dir.path], { timeout: 110_000 });
    const report = JSON.parse(stdout) as ArchiveReport;
    const growth = report.peakRss - report.rssBefore;
    console.log(
      `200 MB archive: ${report.seconds.toFixed(1)} s, RSS before ${(report.rssBefore / MB).toFixed(0)} MB, peak ${(report.peakRss / MB).toFixed(0)} MB, growth ${(growth / MB).toFixed(1)} MB`,
    );
    expect(report.size).toBe(VIDEO_BYTES);
    expect(growth).toBeLessThan(MAX_RSS_GROWTH);
    expect(report.sha256).toBe(sha256(expectedVideoBytes(taskId, VIDEO_BYTES)));
  });
});
