import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { expectedVideoBytes } from '../../src/simulator/video-bytes.ts';
import { startCallbackReceiver } from '../support/callback-receiver.ts';

const API_KEY = 'sk-sim';
const VIDEO_BYTES = 200_000;

// Example bodies of the reference (kling-omni-api.md §1, §2a, §3), with their placeholder strings
// and "a|b" alternatives replaced by values of the same type.
const referenceCreate = {
  code: 0,
  message: 'string',
  request_id: 'string',
  data: {
    task_id: 'string',
    task_info: { external_task_id: 'string' },
    task_status: 'submitted',
    created_at: 1722769557708,
    updated_at: 1722769557708,
  },
};
const referenceQuery = {
  code: 0,
  message: 'SUCCEED',
  request_id: 'string',
  data: {
    task_id: 'string',
    task_status: 'succeed',
    task_status_msg: 'string',
    task_info: { external_task_id: 'string' },
    task_result: { videos: [{ id: 'string', url: 'string', watermark_url: 'string', duration: '5.0' }] },
    watermark_info: { enabled: false },
    final_unit_deduction: 'string',
    created_at: 1722769557708,
    updated_at: 1722769557708,
  },
};
const referenceCallback = {
  task_id: 'string',
  task_status: 'succeed',
  task_status_msg: 'string',
  created_at: 1722769557708,
  updated_at: 1722769557708,
  final_unit_deduction: 'string',
  final_balance_deduction: { quota: 'string', list_price: 'string' },
  task_info: { parent_video: { id: '', url: '', duration: '' }, external_task_id: 'string' },
  task_result: { images: [{ index: 0, url: '' }], videos: [{ id: 'string', url: 'string', duration: '5' }] },
};

/** The JSON "type skeleton" of a value: same keys, primitives replaced by their typeof. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.length > 0 ? [shape(value[0])] : [];
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .map(([k, v]) => [k, shape(v)])
        .sort(([a], [b]) => String(a).localeCompare(String(b))),
    );
  }
  return value === null ? 'null' : typeof value;
}

/** Every key of `actual` exists in `reference` with the same type (recursively). */
function expectSubsetShape(actual: unknown, reference: unknown, where = '$'): void {
  if (Array.isArray(actual)) {
    expect(Array.isArray(reference), where).toBe(true);
    for (const item of actual) expectSubsetShape(item, (reference as unknown[])[0], `${where}[]`);
    return;
  }
  if (actual !== null && typeof actual === 'object') {
    expect(reference !== null && typeof reference === 'object', where).toBe(true);
    for (const [k, v] of Object.entries(actual)) {
      expect(Object.keys(reference as object), `${where}.${k} is not in the reference`).toContain(k);
      expectSubsetShape(v, (reference as Record<string, unknown>)[k], `${where}.${k}`);
    }
    return;
  }
  expect(typeof actual, where).toBe(typeof reference);
}

describe('simulator HTTP contract', () => {
  let sim: Simulator;
  let url: string;
  const headers = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };
  const create = (body: unknown) =>
    fetch(`${url}/kling/v1/videos/omni-video`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const query = (id: string) => fetch(`${url}/kling/v1/videos/omni-video/${encodeURIComponent(id)}`, { headers });
  const control = (path: string, body?: unknown) =>
    fetch(`${url}/__control/${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) });
  const textBody = { model_name: 'kling-video-o1', prompt: 'A fox runs through snow', mode: 'pro', aspect_ratio: '16:9', duration: '5' };

  beforeEach(async () => {
    sim = createSimulator({ apiKey: API_KEY, delays: { processingMs: 20, finishMs: 40 }, videoBytes: VIDEO_BYTES });
    ({ url } = await sim.listen(0));
  });
  afterEach(() => sim.close());

  it('create, query and callback bodies have the reference shapes and values', async () => {
    const receiver = await startCallbackReceiver();
    try {
      const before = Date.now();
      const res = await create({
        ...textBody,
        watermark_info: { enabled: true },
        callback_url: `${receiver.url}/hook`,
        external_task_id: 'job-42',
      });
      expect(res.status).toBe(200);
      const created = (await res.json()) as typeof referenceCreate;
      expect(shape(created)).toEqual(shape(referenceCreate));
      expect(created.data.task_status).toBe('submitted');
      expect(created.data.task_info.external_task_id).toBe('job-42');
      expect(created.data.created_at).toBeGreaterThanOrEqual(before); // Unix milliseconds
      expect(created.data.created_at).toBeLessThanOrEqual(Date.now());
      const id = created.data.task_id;

      // A task that stays submitted (its simulator's delays are a minute) shows the early shape.
      const slow = createSimulator({ delays: { processingMs: 60_000, finishMs: 60_000 } });
      try {
        const { url: slowUrl } = await slow.listen(0);
        const auth = { authorization: 'Bearer any' };
        const slowCreate = await fetch(`${slowUrl}/kling/v1/videos/omni-video`, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify(textBody),
        });
        const slowId = ((await slowCreate.json()) as typeof referenceCreate).data.task_id;
        const early = (await (
          await fetch(`${slowUrl}/kling/v1/videos/omni-video/${slowId}`, { headers: auth })
        ).json()) as typeof referenceQuery;
        expect(early.data).toMatchObject({ task_status: 'submitted', task_status_msg: '', task_info: {}, task_result: {} });
        expect(early.data).not.toHaveProperty('final_unit_deduction');
        expectSubsetShape(early, referenceQuery);
      } finally {
        await slow.close();
      }

      await receiver.waitFor((b) => b.task_id === id && b.task_status === 'succeed');
      const done = (await (await query('job-42')).json()) as typeof referenceQuery;
      expect(shape(done)).toEqual(shape(referenceQuery));
      expect(done).toMatchObject({
        code: 0,
        message: 'SUCCEED',
        data: { task_id: id, task_status: 'succeed', task_status_msg: '', final_unit_deduction: '4' },
      });
      expect(done.data.task_result.videos[0]).toMatchObject({ url: `${url}/results/${id}.mp4`, duration: '5.0' });
      expect(done.data.updated_at).toBeGreaterThan(done.data.created_at);

      const callbacks = receiver.bodies.filter((b) => b.task_id === id);
      expect(callbacks.map((b) => b.task_status)).toEqual(['submitted', 'processing', 'succeed']);
      for (const body of callbacks) {
        expectSubsetShape(body, referenceCallback);
        expect(Object.keys(body)).toEqual(
          expect.arrayContaining(['task_id', 'task_status', 'task_status_msg', 'created_at', 'updated_at', 'task_info', 'task_result']),
        );
        expect(body.created_at).toBe(created.data.created_at);
      }
      expect(callbacks[2]).toMatchObject({ final_unit_deduction: '4', task_info: { external_task_id: 'job-42' } });
      expect(sim.stats).toMatchObject({ callbacksSent: 3, callbacksFailed: 0 });
    } finally {
      await receiver.close();
    }
  });

  it('ends a [[fail:...]] task failed, still with code 0 and the reason in task_status_msg', async () => {
    const receiver = await startCallbackReceiver();
    try {
      const res = await create({ ...textBody, prompt: 'x [[fail:Image pixel is invalid]]', callback_url: `${receiver.url}/h` });
      const id = ((await res.json()) as typeof referenceCreate).data.task_id;
      const last = await receiver.waitFor((b) => b.task_id === id && b.task_status === 'failed');
      expect(last).toMatchObject({ task_status_msg: 'Image pixel is invalid', final_unit_deduction: '0', task_result: {} });
      const body = await (await query(id)).json();
      expect(body).toMatchObject({
        code: 0,
        message: 'SUCCEED',
        data: { task_status: 'failed', task_status_msg: 'Image pixel is invalid' },
      });
    } finally {
      await receiver.close();
    }
  });

  it('prices per the reference table: std/pro, with and without video input', async () => {
    const receiver = await startCallbackReceiver();
    try {
      const bodies = [
        { ...textBody, mode: 'std', duration: '10' }, // 0.6 × 10
        { ...textBody, mode: 'pro', duration: '10' }, // 0.8 × 10
        {
          prompt: 'edit <<<video_1>>>',
          mode: 'std',
          video_list: [{ video_url: 'https://x/in.mp4', refer_type: 'base', keep_original_sound: 'no' }],
        }, // 0.9 × 5
        { ...textBody, mode: 'pro', duration: '3', video_list: [{ video_url: 'https://x/in.mp4', refer_type: 'feature' }] }, // 1.2 × 3
      ];
      const ids: string[] = [];
      for (const body of bodies) {
        const res = await create({ ...body, callback_url: `${receiver.url}/h` });
        ids.push(((await res.json()) as typeof referenceCreate).data.task_id);
      }
      const finals = await Promise.all(ids.map((id) => receiver.waitFor((b) => b.task_id === id && b.task_status === 'succeed')));
      expect(finals.map((b) => b.final_unit_deduction)).toEqual(['6', '8', '4.5', '3.6']);
      expect(finals.map((b) => (b.task_result as { videos: { duration: string }[] }).videos[0]?.duration)).toEqual([
        '10.0',
        '10.0',
        '5.0',
        '3.0',
      ]);
    } finally {
      await receiver.close();
    }
  });

  it.each([
    ['no prompt', { ...textBody, prompt: undefined }, 400, 1201],
    ['prompt over 2500 characters', { ...textBody, prompt: 'p'.repeat(2501) }, 400, 1201],
    ['unknown model', { ...textBody, model_name: 'kling-v9' }, 400, 1201],
    ['bad mode', { ...textBody, mode: 'ultra' }, 400, 1201],
    ['bad aspect ratio', { ...textBody, aspect_ratio: '4:3' }, 400, 1201],
    ['duration out of range', { ...textBody, duration: '11' }, 400, 1201],
    ['duration as a number', { ...textBody, duration: 5 }, 400, 1201],
    ['image without url', { ...textBody, image_list: [{ type: 'first_frame' }] }, 400, 1201],
    ['bad frame type', { ...textBody, image_list: [{ image_url: 'https://x/a.png', type: 'middle' }] }, 400, 1201],
    ['two videos', { ...textBody, video_list: [1, 2].map(() => ({ video_url: 'https://x/v.mp4', refer_type: 'feature' })) }, 400, 1201],
    ['non-numeric element id', { ...textBody, element_list: [{ element_id: 'abc' }] }, 400, 1201],
    ['body not JSON', '{"prompt":', 400, 1200],
  ])('rejects %s like Kling', async (_name, body, status, code) => {
    const res = await create(body);
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ code, message: expect.any(String), request_id: expect.any(String) });
    expect(sim.stats.createsAccepted).toBe(0);
  });

  it('refuses a duplicate external_task_id with 400/1201', async () => {
    expect((await create({ ...textBody, external_task_id: 'dup' })).status).toBe(200);
    const again = await create({ ...textBody, external_task_id: 'dup' });
    expect(again.status).toBe(400);
    expect(await again.json()).toMatchObject({ code: 1201, message: 'external_task_id already exists' });
    expect(sim.stats.byExternalTaskId.dup).toEqual({ requests: 2, accepted: 1 });
  });

  it('answers unknown ids with 404/1203 and bad keys with 401', async () => {
    const missing = await query('nope');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 1203 });
    const noKey = await fetch(`${url}/kling/v1/videos/omni-video/nope`);
    expect(noKey.status).toBe(401);
    expect(await noKey.json()).toMatchObject({ code: 1001 });
    const wrongKey = await fetch(`${url}/kling/v1/videos/omni-video`, {
      method: 'POST',
      headers: { authorization: 'Bearer other' },
      body: '{}',
    });
    expect(wrongKey.status).toBe(401);
    expect(await wrongKey.json()).toMatchObject({ code: 1000 });
  });

  describe('result file', () => {
    let id: string;
    beforeEach(async () => {
      const receiver = await startCallbackReceiver();
      try {
        const res = await create({ ...textBody, callback_url: `${receiver.url}/h` });
        id = ((await res.json()) as typeof referenceCreate).data.task_id;
        await receiver.waitFor((b) => b.task_id === id && b.task_status === 'succeed');
      } finally {
        await receiver.close();
      }
    });
    const get = (range?: string, method = 'GET') => fetch(`${url}/results/${id}.mp4`, { method, headers: range ? { range } : {} });
    const expected = () => expectedVideoBytes(id, VIDEO_BYTES);

    it('serves the whole MP4 with the expected bytes', async () => {
      const res = await get();
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('video/mp4');
      expect(res.headers.get('accept-ranges')).toBe('bytes');
      expect(res.headers.get('content-length')).toBe(String(VIDEO_BYTES));
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(bytes.toString('latin1', 4, 12)).toBe('ftypisom');
      expect(bytes.toString('latin1', 28, 32)).toBe('mdat');
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(createHash('sha256').update(expected()).digest('hex'));
    });

    it.each([
      ['bytes=10-99', 10, 99],
      ['bytes=0-0', 0, 0],
      ['bytes=65530-131080', 65530, 131080], // unaligned, across generation chunks
      [`bytes=${VIDEO_BYTES - 5}-`, VIDEO_BYTES - 5, VIDEO_BYTES - 1],
      ['bytes=-100', VIDEO_BYTES - 100, VIDEO_BYTES - 1],
      [`bytes=199990-999999`, 199990, VIDEO_BYTES - 1],
    ])('answers %s with 206 and exactly those bytes', async (range, start, end) => {
      const res = await get(range);
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${VIDEO_BYTES}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(expected().subarray(start, end + 1))).toBe(true);
    });

    it('answers an unsatisfiable range with 416, HEAD with headers only, unknown tasks with 404', async () => {
      const res = await get(`bytes=${VIDEO_BYTES}-`);
      expect(res.status).toBe(416);
      expect(res.headers.get('content-range')).toBe(`bytes */${VIDEO_BYTES}`);
      expect((await get('bytes=-0')).status).toBe(416);
      const head = await get(undefined, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(VIDEO_BYTES));
      expect((await fetch(`${url}/results/0.mp4`)).status).toBe(404);
    });

    it('fails the result a given number of times on request', async () => {
      sim.faults.push({ op: 'result', kind: 'http500', count: 2 });
      expect((await get()).status).toBe(500);
      expect((await get()).status).toBe(500);
      expect((await get()).status).toBe(200);
    });
  });

  it('streams large results without building them in memory first', async () => {
    const size = 48 * 1024 * 1024;
    const big = createSimulator({ apiKey: API_KEY, delays: { processingMs: 0, finishMs: 0 }, videoBytes: size });
    const receiver = await startCallbackReceiver();
    try {
      const { url: bigUrl } = await big.listen(0);
      const res = await fetch(`${bigUrl}/kling/v1/videos/omni-video`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ ...textBody, callback_url: `${receiver.url}/h` }),
      });
      const id = ((await res.json()) as typeof referenceCreate).data.task_id;
      await receiver.waitFor((b) => b.task_id === id && b.task_status === 'succeed');
      const file = await fetch(`${bigUrl}/results/${id}.mp4`);
      const hash = createHash('sha256');
      let received = 0;
      let firstChunk: Buffer | null = null;
      for await (const chunk of file.body as unknown as AsyncIterable<Uint8Array>) {
        firstChunk ??= Buffer.from(chunk);
        hash.update(chunk);
        received += chunk.length;
      }
      expect(received).toBe(size);
      expect(firstChunk?.toString('latin1', 4, 8)).toBe('ftyp');
      expect(hash.digest('hex')).toBe(createHash('sha256').update(expectedVideoBytes(id, size)).digest('hex'));
    } finally {
      await receiver.close();
      await big.close();
    }
  });

  describe('control routes (for a simulator in another process)', () => {
    it('queues faults over HTTP and reports stats', async () => {
      const queued = await control('faults', [
        { op: 'create', kind: 'http429_1302' },
        { op: 'get', kind: 'http401' },
      ]);
      expect(await queued.json()).toEqual({ queued: 2 });
      const limited = await create(textBody);
      expect(limited.status).toBe(429);
      expect(await limited.json()).toMatchObject({ code: 1302 });
      const ok = await create({ ...textBody, external_task_id: 'e-1' });
      expect(ok.status).toBe(200);
      expect((await query('e-1')).status).toBe(401);
      expect((await query('e-1')).status).toBe(200);
      const stats = await (await control('stats')).json();
      expect(stats).toMatchObject({
        createRequests: 2,
        createsAccepted: 1,
        getRequests: 2,
        byExternalTaskId: { 'e-1': { requests: 1, accepted: 1 } },
      });
      expect((await control('faults', { op: 'create', kind: 'explode' })).status).toBe(400);
    });

    it('applies slow, reset and drop_after_accept faults', async () => {
      await control('faults', { op: 'get', kind: 'slow', ms: 150 });
      const started = performance.now();
      expect((await query('x')).status).toBe(404);
      expect(performance.now() - started).toBeGreaterThanOrEqual(140);

      await control('faults', { op: 'get', kind: 'reset' });
      await expect(query('x')).rejects.toThrow();

      await control('faults', { op: 'create', kind: 'drop_after_accept' });
      await expect(create({ ...textBody, external_task_id: 'dropped' })).rejects.toThrow();
      expect((await query('dropped')).status).toBe(200);
    });

    it('drops callbacks while switched off', async () => {
      const receiver = await startCallbackReceiver();
      try {
        await control('settings', { callbacks: false });
        const silent = (await (await create({ ...textBody, callback_url: `${receiver.url}/h` })).json()) as typeof referenceCreate;
        await control('settings', { callbacks: true });
        const loud = (await (await create({ ...textBody, callback_url: `${receiver.url}/h` })).json()) as typeof referenceCreate;
        // Same delays, created later: its final callback comes after every transition of the first.
        await receiver.waitFor((b) => b.task_id === loud.data.task_id && b.task_status === 'succeed');
        expect(receiver.bodies.filter((b) => b.task_id === silent.data.task_id)).toEqual([]);
        expect(sim.stats).toMatchObject({ callbacksDropped: 3, callbacksSent: 3 });
      } finally {
        await receiver.close();
      }
    });

    it('resets tasks, faults and stats', async () => {
      await create({ ...textBody, external_task_id: 'before-reset' });
      sim.faults.push({ op: 'create', kind: 'http500' });
      expect((await control('reset', {})).status).toBe(200);
      expect((await query('before-reset')).status).toBe(404);
      expect(sim.faults).toEqual([]);
      expect((await create({ ...textBody, external_task_id: 'before-reset' })).status).toBe(200);
      expect(sim.stats).toMatchObject({ createRequests: 1, createsAccepted: 1, getRequests: 1 });
    });
  });
});

describe('simulator mounting and process', () => {
  it('can be mounted as a request listener and builds result URLs from the Host header', async () => {
    const sim = createSimulator({ delays: { processingMs: 0, finishMs: 0 } });
    const server = createServer(sim.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const receiver = await startCallbackReceiver();
    try {
      const headers = { authorization: 'Bearer anything' };
      const res = await fetch(`${base}/kling/v1/videos/omni-video`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ prompt: 'p', aspect_ratio: '1:1', callback_url: `${receiver.url}/h` }),
      });
      const id = ((await res.json()) as typeof referenceCreate).data.task_id;
      const done = await receiver.waitFor((b) => b.task_id === id && b.task_status === 'succeed');
      expect(done).toMatchObject({ task_result: { videos: [{ url: `${base}/results/${id}.mp4` }] } });
    } finally {
      await receiver.close();
      await sim.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  });

  it('runs as a separate process via simulator/main.ts and stops on SIGTERM', async () => {
    const entry = fileURLToPath(new URL('../../src/simulator/main.ts', import.meta.url));
    const child = spawn(process.execPath, [entry, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const simUrl = await new Promise<string>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`no URL printed within 10 s: ${out}`)), 10_000);
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (m?.[1]) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
        child.once('exit', () => reject(new Error(`simulator exited early: ${out}`)));
      });
      const stats = await (await fetch(`${simUrl}/__control/stats`)).json();
      expect(stats).toMatchObject({ createRequests: 0 });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
