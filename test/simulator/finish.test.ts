import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { startCallbackReceiver } from '../support/callback-receiver.ts';

const API_KEY = 'sk-sim';

describe('finishing a simulated task early (POST /__control/finish, simulator.finish)', () => {
  let sim: Simulator;
  let url: string;
  const headers = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };
  const body = { model_name: 'kling-video-o1', prompt: 'A fox runs through snow', mode: 'std', aspect_ratio: '16:9', duration: '10' };
  const create = async (extra: Record<string, unknown> = {}) => {
    const response = await fetch(`${url}/kling/v1/videos/omni-video`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...body, ...extra }),
    });
    return ((await response.json()) as { data: { task_id: string } }).data.task_id;
  };
  const query = async (id: string) =>
    ((await (await fetch(`${url}/kling/v1/videos/omni-video/${id}`, { headers })).json()) as { data: Record<string, unknown> }).data;
  const finish = (payload: unknown) => fetch(`${url}/__control/finish`, { method: 'POST', body: JSON.stringify(payload) });

  beforeEach(async () => {
    // Tasks would take ten minutes: only `finish` ends them here.
    sim = createSimulator({ apiKey: API_KEY, delays: { processingMs: 20, finishMs: 600_000 } });
    ({ url } = await sim.listen(0));
  });
  afterEach(() => sim.close());

  it('ends a task as it would have ended, and calls back', async () => {
    const receiver = await startCallbackReceiver();
    try {
      const id = await create({ callback_url: `${receiver.url}/hook` });
      expect(await (await finish({ task_id: id })).json()).toEqual({ finished: true });
      const done = await query(id);
      expect(done).toMatchObject({
        task_status: 'succeed',
        final_unit_deduction: '6',
        task_result: { videos: [{ url: `${url}/results/${id}.mp4`, duration: '10.0' }] },
      });
      await receiver.waitFor((callback) => callback.task_id === id && callback.task_status === 'succeed');
      // Final is final: a second finish changes nothing.
      expect(await (await finish({ task_id: id, task_status: 'failed' })).json()).toEqual({ finished: false });
      expect((await query(id)).task_status).toBe('succeed');
    } finally {
      await receiver.close();
    }
  });

  it('ends a task the way a callback body describes it, for tests whose hand-made callbacks must agree', async () => {
    const id = await create();
    const callback = {
      task_id: id,
      task_status: 'succeed',
      task_status_msg: '',
      task_info: { external_task_id: 'ignored' },
      task_result: { videos: [{ id: 'vid-1', url: 'https://cdn.example/v.mp4', duration: '5' }] },
      final_unit_deduction: '4',
    };
    expect(sim.finish(callback)).toBe(true);
    expect(await query(id)).toMatchObject({
      task_status: 'succeed',
      final_unit_deduction: '4',
      task_result: { videos: [{ id: 'vid-1', url: 'https://cdn.example/v.mp4', duration: '5' }] },
    });
    const failing = await create();
    expect(sim.finish({ task_id: failing, task_status: 'failed', task_status_msg: 'Image pixel is invalid' })).toBe(true);
    expect(await query(failing)).toMatchObject({ task_status: 'failed', task_status_msg: 'Image pixel is invalid', task_result: {} });
  });

  it('answers false for an unknown task and 400 for a body that is not a finish', async () => {
    expect(await (await finish({ task_id: 'nope' })).json()).toEqual({ finished: false });
    expect((await finish({ task_status: 'succeed' })).status).toBe(400);
    expect((await finish({ task_id: 'x', task_status: 'processing' })).status).toBe(400);
  });
});
