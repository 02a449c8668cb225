import { afterAll, describe, expect, it } from 'vitest';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { browserTestName, hasChromium, launchChromium } from '../support/browser.ts';
import type { TestBrowser } from '../support/browser.ts';
import { startCallbackReceiver } from '../support/callback-receiver.ts';

describe("the simulator's result video in a browser", () => {
  let simulator: Simulator | null = null;
  let browser: TestBrowser | null = null;
  afterAll(async () => {
    await browser?.close();
    await simulator?.close();
  });

  const name = browserTestName('a 9:16, 7 s result plays in Chromium, at 180×320, and seeks to 6 s (Range)');

  it.skipIf(!hasChromium)(name, { timeout: 60_000 }, async () => {
    simulator = createSimulator({ delays: { processingMs: 0, finishMs: 0 } });
    const { url } = await simulator.listen(0);
    const receiver = await startCallbackReceiver();
    let resultUrl: string;
    try {
      const response = await fetch(`${url}/kling/v1/videos/omni-video`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-sim', 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'A fox runs through snow', aspect_ratio: '9:16', duration: '7', callback_url: `${receiver.url}/h` }),
      });
      const taskId = ((await response.json()) as { data: { task_id: string } }).data.task_id;
      const done = await receiver.waitFor((body) => body.task_id === taskId && body.task_status === 'succeed');
      resultUrl = (done as { task_result: { videos: { url: string }[] } }).task_result.videos[0]?.url ?? '';
    } finally {
      await receiver.close();
    }

    browser = await launchChromium();
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    await page.goto(`${url}/__control/stats`); // any page of the simulator's origin
    const played = await page.evaluate(async (src) => {
      const video = document.createElement('video');
      video.muted = true;
      const once = (event: string) =>
        new Promise<void>((resolve, reject) => {
          video.addEventListener(event, () => resolve(), { once: true });
          video.addEventListener('error', () => reject(new Error(`media error ${video.error?.code}: ${video.error?.message}`)), {
            once: true,
          });
        });
      const metadata = once('loadedmetadata');
      video.src = src;
      document.body.append(video);
      await metadata;
      const pastOneSecond = new Promise<void>((resolve) => {
        const check = () => (video.currentTime > 1 ? resolve() : undefined);
        video.addEventListener('timeupdate', check);
      });
      await video.play();
      await pastOneSecond;
      video.pause();
      const seeked = once('seeked');
      video.currentTime = 6;
      await seeked;
      const quality = video.getVideoPlaybackQuality();
      return {
        duration: video.duration,
        width: video.videoWidth,
        height: video.videoHeight,
        at: video.currentTime,
        frames: quality.totalVideoFrames,
      };
    }, resultUrl);

    expect(Math.abs(played.duration - 7)).toBeLessThanOrEqual(0.5);
    expect([played.width, played.height]).toEqual([180, 320]);
    expect(played.at).toBeCloseTo(6, 0);
    expect(played.frames).toBeGreaterThan(1);
    expect(simulator.stats.resultRequests).toBeGreaterThanOrEqual(1);
  });
});
