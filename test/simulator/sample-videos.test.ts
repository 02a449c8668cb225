import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE_ASPECT_RATIOS, SAMPLE_DURATIONS, sampleVideoUrl } from '../../src/simulator/sample-videos.ts';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { startCallbackReceiver } from '../support/callback-receiver.ts';

type Box = { type: string; start: number; end: number };

/** The boxes directly inside bytes [start, end) of an MP4 (ISO BMFF). */
function boxes(mp4: Buffer, start = 0, end = mp4.length): Box[] {
  const found: Box[] = [];
  for (let at = start; at + 8 <= end; ) {
    let size = mp4.readUInt32BE(at);
    let header = 8;
    if (size === 1) {
      size = Number(mp4.readBigUInt64BE(at + 8));
      header = 16;
    } else if (size === 0) size = end - at;
    if (size < header || at + size > end) throw new Error(`box at ${at} overruns its parent`);
    found.push({ type: mp4.toString('latin1', at + 4, at + 8), start: at + header, end: at + size });
    at += size;
  }
  return found;
}

function child(mp4: Buffer, parent: Box, type: string): Box[] {
  return boxes(mp4, parent.start, parent.end).filter((box) => box.type === type);
}

/** Duration (mvhd) and the video track's size (the tkhd with a non-zero width). */
function describeMp4(mp4: Buffer): { topLevel: string[]; seconds: number; width: number; height: number } {
  const top = boxes(mp4);
  const moov = top.find((box) => box.type === 'moov');
  if (!moov) throw new Error('no moov box');
  const [mvhd] = child(mp4, moov, 'mvhd');
  if (!mvhd) throw new Error('no mvhd box');
  const version = mp4[mvhd.start];
  const timescale = mp4.readUInt32BE(mvhd.start + (version === 1 ? 20 : 12));
  const duration = version === 1 ? Number(mp4.readBigUInt64BE(mvhd.start + 24)) : mp4.readUInt32BE(mvhd.start + 16);
  const tracks = child(mp4, moov, 'trak').flatMap((trak) => child(mp4, trak, 'tkhd'));
  const sizes = tracks.map((tkhd) => {
    // width and height are the last 8 bytes of tkhd, 16.16 fixed point
    return { width: mp4.readUInt32BE(tkhd.end - 8) / 65536, height: mp4.readUInt32BE(tkhd.end - 4) / 65536 };
  });
  const video = sizes.find((size) => size.width > 0);
  if (!video) throw new Error('no video track');
  return { topLevel: top.map((box) => box.type), seconds: duration / timescale, ...video };
}

const RATIOS = { '16:9': 16 / 9, '9:16': 9 / 16, '1:1': 1 };

describe('the committed sample videos', () => {
  it.each(SAMPLE_ASPECT_RATIOS.flatMap((ratio) => SAMPLE_DURATIONS.map((seconds) => [ratio, seconds] as const)))(
    '%s, %i s: an MP4 of that duration and shape, moov first, under 300 KB',
    (ratio, seconds) => {
      const mp4 = readFileSync(sampleVideoUrl(ratio, seconds));
      const info = describeMp4(mp4);
      expect(info.topLevel.slice(0, 2)).toEqual(['ftyp', 'moov']);
      expect(info.topLevel).toContain('mdat');
      expect(Math.abs(info.seconds - seconds)).toBeLessThanOrEqual(0.5);
      expect(info.width / info.height).toBeCloseTo(RATIOS[ratio], 2);
      expect(mp4.length).toBeLessThan(300 * 1024);
      expect(mp4.includes(Buffer.from('avc1'))).toBe(true);
    },
  );
});

describe('the simulator serves a real MP4 by default', () => {
  const headers = { authorization: 'Bearer sk-sim', 'content-type': 'application/json' };
  let sim: Simulator;
  let url: string;
  let receiver: Awaited<ReturnType<typeof startCallbackReceiver>>;

  beforeAll(async () => {
    sim = createSimulator({ delays: { processingMs: 0, finishMs: 10 } });
    ({ url } = await sim.listen(0));
    receiver = await startCallbackReceiver();
  });
  afterAll(async () => {
    await sim.close();
    await receiver.close();
  });

  /** Creates a task, waits for its final callback, and returns its result's URL. */
  async function finishedResult(body: Record<string, unknown>): Promise<{ resultUrl: string; duration: string }> {
    const response = await fetch(`${url}/kling/v1/videos/omni-video`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ prompt: 'A fox runs through snow', callback_url: `${receiver.url}/h`, ...body }),
    });
    const created = (await response.json()) as { data: { task_id: string } };
    expect(response.status, JSON.stringify(created)).toBe(200);
    const done = await receiver.waitFor((b) => b.task_id === created.data.task_id && b.task_status === 'succeed');
    const video = (done as { task_result: { videos: { url: string; duration: string }[] } }).task_result.videos[0];
    if (!video) throw new Error(`no video in ${JSON.stringify(done)}`);
    return { resultUrl: video.url, duration: video.duration };
  }

  it.each([
    ['16:9, 5 s', { aspect_ratio: '16:9', duration: '5' }, 5, 16 / 9],
    ['9:16, 7 s', { aspect_ratio: '9:16', duration: '7' }, 7, 9 / 16],
    ['1:1, 3 s', { aspect_ratio: '1:1', duration: '3' }, 3, 1],
    ['1:1, 10 s', { aspect_ratio: '1:1', duration: '10' }, 10, 1],
    [
      'no aspect ratio (first frame), 10 s: 16:9',
      { image_list: [{ image_url: 'https://example.com/a.png', type: 'first_frame' }], duration: '10' },
      10,
      16 / 9,
    ],
    [
      'a base video: the task duration (5 s), 16:9',
      { video_list: [{ video_url: 'https://example.com/v.mp4', refer_type: 'base' }] },
      5,
      16 / 9,
    ],
  ])('%s', async (_name, body, seconds, ratio) => {
    const { resultUrl, duration } = await finishedResult(body);
    expect(Number(duration)).toBe(seconds);
    const response = await fetch(resultUrl);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('video/mp4');
    const mp4 = Buffer.from(await response.arrayBuffer());
    expect(response.headers.get('content-length')).toBe(String(mp4.length));
    const info = describeMp4(mp4);
    expect(Math.abs(info.seconds - seconds), `mvhd says ${info.seconds} s`).toBeLessThanOrEqual(0.5);
    expect(info.width / info.height).toBeCloseTo(ratio, 2);
  });

  it('serves byte ranges of the real file', async () => {
    const { resultUrl } = await finishedResult({ aspect_ratio: '9:16', duration: '4' });
    const whole = Buffer.from(await (await fetch(resultUrl)).arrayBuffer());
    const partial = await fetch(resultUrl, { headers: { range: 'bytes=100-4099' } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get('content-range')).toBe(`bytes 100-4099/${whole.length}`);
    expect(Buffer.from(await partial.arrayBuffer()).equals(whole.subarray(100, 4100))).toBe(true);
    const tail = await fetch(resultUrl, { headers: { range: 'bytes=-10' } });
    expect(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(whole.length - 10))).toBe(true);
    expect((await fetch(resultUrl, { headers: { range: `bytes=${whole.length}-` } })).status).toBe(416);
  });
});
