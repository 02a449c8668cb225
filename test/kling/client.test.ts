import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKlingClient } from '../../src/kling/client.ts';
import type { KlingClientOptions } from '../../src/kling/client.ts';
import { KlingError } from '../../src/kling/errors.ts';
import { toUpstreamBody } from '../../src/kling/body.ts';
import type { UpstreamCreateBody } from '../../src/kling/body.ts';
import { createOmniVideoInputSchema } from '../../src/tasks/create-input.ts';
import type { CreateOmniVideoInput } from '../../src/tasks/create-input.ts';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { startCallbackReceiver } from '../support/callback-receiver.ts';

const API_KEY = 'sk-test';

function upstreamBody(input: Partial<CreateOmniVideoInput> = {}, callbackUrl: string | null = null): UpstreamCreateBody {
  const req = createOmniVideoInputSchema.parse({ prompt: 'A fox runs through snow', aspectRatio: 'RATIO_16_9', ...input });
  return toUpstreamBody(req, { externalTaskId: `task-${randomUUID()}`, callbackUrl });
}

async function rejection(promise: Promise<unknown>): Promise<KlingError> {
  const error = await promise.then(
    (value) => {
      throw new Error(`expected a KlingError, got ${JSON.stringify(value)}`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KlingError);
  return error as KlingError;
}

describe('kling client against the simulator', () => {
  let sim: Simulator;
  let baseUrl: string;
  const client = (opts: Partial<KlingClientOptions> = {}) =>
    createKlingClient({ baseUrl, apiKey: API_KEY, backoff: { baseMs: 5, maxMs: 20 }, timeoutMs: 2000, ...opts });

  beforeEach(async () => {
    sim = createSimulator({ apiKey: API_KEY, delays: { processingMs: 20, finishMs: 40 }, videoBytes: 4096 });
    ({ url: baseUrl } = await sim.listen(0));
  });
  afterEach(() => sim.close());

  it('maps a created task and its finished state to every normalized field', async () => {
    const receiver = await startCallbackReceiver();
    try {
      const body = upstreamBody({ mode: 'STD', durationSeconds: 10 }, `${receiver.url}/hook`);
      const before = Date.now();
      const created = await client().createTask(body);
      expect(created).toMatchObject({
        externalTaskId: body.external_task_id,
        status: 'submitted',
        statusMessage: null,
        videos: [],
        finalUnitDeduction: null,
      });
      expect(created.taskId).toMatch(/^\d+$/);
      expect(created.createdAt?.getTime()).toBeGreaterThanOrEqual(before);
      expect(created.updatedAt).toEqual(created.createdAt);
      expect(created.raw).toMatchObject({ code: 0, data: { task_id: created.taskId } });

      await receiver.waitFor((b) => b.task_id === created.taskId && b.task_status === 'succeed');
      const done = await client().getTask({ taskId: created.taskId });
      expect(done).toMatchObject({
        taskId: created.taskId,
        externalTaskId: body.external_task_id,
        status: 'succeed',
        statusMessage: null,
        videos: [{ url: `${baseUrl}/results/${created.taskId}.mp4`, durationSeconds: 10 }],
        finalUnitDeduction: '6', // std, 0.6 units/s × 10 s
        createdAt: created.createdAt,
      });
      expect(done?.videos[0]?.id).toEqual(expect.any(String));
      expect(done?.updatedAt?.getTime()).toBeGreaterThan(created.createdAt?.getTime() ?? Infinity);
    } finally {
      await receiver.close();
    }
  });

  it('retries a 500 and creates exactly one task, looking it up before resubmitting', async () => {
    const calls: { op: string; outcome: string }[] = [];
    sim.faults.push({ op: 'create', kind: 'http500' });
    const body = upstreamBody();
    const task = await client({ onCall: ({ op, outcome }) => calls.push({ op, outcome }) }).createTask(body);
    expect(task.externalTaskId).toBe(body.external_task_id);
    const stats = sim.stats;
    expect(stats.createRequests).toBe(2);
    expect(stats.createsAccepted).toBe(1);
    expect(stats.byExternalTaskId[body.external_task_id]).toEqual({ requests: 2, accepted: 1 });
    expect(calls).toEqual([
      { op: 'create', outcome: 'UPSTREAM_UNAVAILABLE' },
      { op: 'get', outcome: 'not_found' },
      { op: 'create', outcome: 'ok' },
    ]);
  });

  it('retries 429/1302 (rate limit) and then succeeds', async () => {
    sim.faults.push({ op: 'create', kind: 'http429_1302' });
    const body = upstreamBody();
    await client().createTask(body);
    expect(sim.stats.byExternalTaskId[body.external_task_id]).toEqual({ requests: 2, accepted: 1 });
  });

  it('waits at least one second before retrying 429/1303 (concurrency limit)', async () => {
    sim.faults.push({ op: 'create', kind: 'http429_1303' });
    const body = upstreamBody();
    const started = performance.now();
    await client().createTask(body);
    expect(performance.now() - started).toBeGreaterThanOrEqual(990);
    expect(sim.stats.byExternalTaskId[body.external_task_id]).toEqual({ requests: 2, accepted: 1 });
  });

  it('with retryThrottled: false, a 1303 or 429 is thrown at once (the dispatcher requeues), other failures still retried', async () => {
    sim.faults.push({ op: 'create', kind: 'http429_1303' });
    const body = upstreamBody();
    const concurrency = await rejection(client().createTask(body, { retryThrottled: false }));
    expect(concurrency).toMatchObject({ code: 'UPSTREAM_CONCURRENCY_LIMIT', retryable: true, ambiguous: false, upstreamCode: 1303 });
    expect(sim.stats.byExternalTaskId[body.external_task_id]).toEqual({ requests: 1, accepted: 0 });
    sim.faults.push({ op: 'create', kind: 'http429_1302' });
    const rate = await rejection(client().createTask(upstreamBody(), { retryThrottled: false }));
    expect(rate).toMatchObject({ code: 'UPSTREAM_RATE_LIMITED', upstreamCode: 1302 });
    sim.faults.push({ op: 'create', kind: 'http500' });
    const retried = upstreamBody();
    await client().createTask(retried, { retryThrottled: false });
    expect(sim.stats.byExternalTaskId[retried.external_task_id]).toEqual({ requests: 2, accepted: 1 });
  });

  it('does not retry 400/1301 and maps it to UPSTREAM_CONTENT_REJECTED', async () => {
    sim.faults.push({ op: 'create', kind: 'http400_1301' });
    const error = await rejection(client().createTask(upstreamBody()));
    expect(error).toMatchObject({
      code: 'UPSTREAM_CONTENT_REJECTED',
      retryable: false,
      ambiguous: false,
      httpStatus: 400,
      upstreamCode: 1301,
    });
    expect(error.message).toContain('risk control');
    expect(sim.stats.createRequests).toBe(1);
    expect(sim.stats.getRequests).toBe(0);
  });

  it('maps a wrong key to UPSTREAM_AUTH without retrying', async () => {
    const error = await rejection(client({ apiKey: 'sk-wrong' }).createTask(upstreamBody()));
    expect(error).toMatchObject({ code: 'UPSTREAM_AUTH', retryable: false, httpStatus: 401, upstreamCode: 1000 });
    expect(sim.stats.createRequests).toBe(1);
  });

  it('times out a hanging upstream as an ambiguous UPSTREAM_UNAVAILABLE', async () => {
    sim.faults.push({ op: 'create', kind: 'hang' });
    const started = performance.now();
    const error = await rejection(client({ timeoutMs: 300, maxAttempts: 1 }).createTask(upstreamBody()));
    expect(error).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', ambiguous: true, retryable: true, httpStatus: null });
    expect(error.message).toContain('300 ms');
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('finds a create whose answer was lost by its external id instead of sending it twice', async () => {
    sim.faults.push({ op: 'create', kind: 'drop_after_accept' });
    const body = upstreamBody();
    const task = await client().createTask(body);
    expect(task.externalTaskId).toBe(body.external_task_id);
    expect(sim.stats.byExternalTaskId[body.external_task_id]).toEqual({ requests: 1, accepted: 1 });
    expect(sim.stats.createsAccepted).toBe(1);
  });

  it('answers a duplicate external id with the existing task', async () => {
    const body = upstreamBody();
    const first = await client().createTask(body);
    const again = await client().createTask(body);
    expect(again.taskId).toBe(first.taskId);
    expect(sim.stats.byExternalTaskId[body.external_task_id]).toEqual({ requests: 2, accepted: 1 });
  });

  it('keeps a duplicate it cannot look up ambiguous', async () => {
    const body = upstreamBody();
    await client().createTask(body);
    sim.faults.push({ op: 'get', kind: 'http500', count: 10 });
    const error = await rejection(client({ maxAttempts: 2 }).createTask(body));
    expect(error).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', ambiguous: true });
    expect(error.message).toContain(body.external_task_id);
  });

  it('throws the last error when retries run out', async () => {
    sim.faults.push({ op: 'create', kind: 'http500', count: 10 });
    const error = await rejection(client({ maxAttempts: 3 }).createTask(upstreamBody()));
    expect(error).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', httpStatus: 500, upstreamCode: 5000, ambiguous: true });
    expect(sim.stats.createRequests).toBe(3);
  });

  it('retries a connection reset on a query', async () => {
    const task = await client().createTask(upstreamBody());
    sim.faults.push({ op: 'get', kind: 'reset' });
    expect((await client().getTask({ taskId: task.taskId }))?.taskId).toBe(task.taskId);
    expect(sim.stats.getRequests).toBe(2);
  });

  it('reports a refused connection as unambiguous', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const error = await rejection(
      createKlingClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: API_KEY, maxAttempts: 1 }).createTask(upstreamBody()),
    );
    expect(error).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', ambiguous: false, retryable: true });
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('returns null for unknown tasks and finds tasks by external id (URL-encoded)', async () => {
    expect(await client().getTask({ taskId: '123456789' })).toBeNull();
    expect(await client().getTask({ externalTaskId: 'never-sent' })).toBeNull();
    const body = { ...upstreamBody(), external_task_id: `ext/${randomUUID()} ü` };
    const created = await client().createTask(body);
    const found = await client().getTask({ externalTaskId: body.external_task_id });
    expect(found).toMatchObject({ taskId: created.taskId, externalTaskId: body.external_task_id });
  });
});

// --- parsing and error mapping with literal upstream bodies ------------------------------------

function scriptedFetch(responses: (() => Response)[]) {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(input), init });
    const next = responses.shift();
    if (!next) throw new Error('scripted fetch ran out of responses');
    return next();
  };
  return { calls, fetch: fetchImpl as typeof fetch };
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

describe('response parsing', () => {
  const getWith = async (body: unknown) => {
    const scripted = scriptedFetch([json(200, body)]);
    const task = await createKlingClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k', fetch: scripted.fetch }).getTask({
      taskId: 't',
    });
    return { task, calls: scripted.calls };
  };

  it('reads the raw Kling envelope (CometAPI current page example)', async () => {
    const { task, calls } = await getWith({
      code: 0,
      message: 'success',
      request_id: '8781aa',
      data: {
        task_id: '8781aa',
        task_info: {},
        created_at: 1775000000000,
        updated_at: 1775000001000,
        task_result: {},
        task_status: 'processing',
      },
    });
    expect(task).toMatchObject({
      taskId: '8781aa',
      externalTaskId: null,
      status: 'processing',
      videos: [],
      createdAt: new Date(1775000000000),
      updatedAt: new Date(1775000001000),
    });
    expect(calls[0]?.url).toBe('http://127.0.0.1:9/kling/v1/videos/omni-video/t');
    expect(new Headers(calls[0]?.init?.headers).get('authorization')).toBe('Bearer k');
  });

  it('reads a failed task that still answers code 0 / SUCCEED', async () => {
    const { task } = await getWith({
      code: 0,
      message: 'SUCCEED',
      request_id: 'r-1',
      data: {
        task_id: '860001',
        task_status: 'failed',
        task_status_msg: 'Image pixel is invalid',
        task_info: { external_task_id: 'ext-1' },
        task_result: {},
        created_at: 1722769557708,
        updated_at: 1722769557708,
      },
    });
    expect(task).toMatchObject({ taskId: '860001', status: 'failed', statusMessage: 'Image pixel is invalid', videos: [] });
  });

  it('reads the wrapped shape with the Kling envelope at data.data (and its task at data.data.data)', async () => {
    const { task } = await getWith({
      code: 'success',
      message: '',
      data: {
        task_id: 'relay-42',
        action: 'OMNI_VIDEO',
        status: 'SUCCESS',
        fail_reason: '',
        progress: '100%',
        submit_time: 1741770000,
        data: {
          code: 0,
          message: 'SUCCEED',
          request_id: 'r-2',
          data: {
            task_id: '860002',
            task_status: 'succeed',
            task_status_msg: '',
            task_info: { external_task_id: 'ext-2' },
            task_result: {
              videos: [{ id: 'v-1', url: 'https://cdn.example/v.mp4', watermark_url: 'https://cdn.example/w.mp4', duration: '5.0' }],
            },
            watermark_info: { enabled: false },
            final_unit_deduction: '4',
            created_at: 1741770000000,
            updated_at: 1741770060000,
            some_future_field: { ignored: true },
          },
        },
      },
    });
    expect(task).toMatchObject({
      taskId: 'relay-42',
      externalTaskId: 'ext-2',
      status: 'succeed',
      statusMessage: null,
      videos: [{ id: 'v-1', url: 'https://cdn.example/v.mp4', durationSeconds: 5 }],
      finalUnitDeduction: '4',
      updatedAt: new Date(1741770060000),
    });
  });

  it('reads the wrapped shape with the Kling task directly at data.data', async () => {
    const { task } = await getWith({
      code: 0,
      data: { task_id: 'relay-7', status: 'IN_PROGRESS', data: { task_id: '860003', task_status: 'processing' } },
    });
    expect(task).toMatchObject({ taskId: 'relay-7', status: 'processing' });
  });

  it('falls back to the relay status while the Kling object is absent', async () => {
    const { task } = await getWith({ code: 'success', data: { task_id: 'relay-8', status: 'FAILURE', fail_reason: 'quota', data: null } });
    expect(task).toMatchObject({ taskId: 'relay-8', status: 'failed', statusMessage: 'quota' });
  });

  it('treats an unreadable success body as UPSTREAM_UNAVAILABLE (ambiguous for a create)', async () => {
    const scripted = scriptedFetch([json(200, { code: 0, data: { task_id: 'x', task_status: 'exploded' } })]);
    const error = await rejection(
      createKlingClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k', fetch: scripted.fetch, maxAttempts: 1 }).createTask(upstreamBody()),
    );
    expect(error).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', ambiguous: true });
    expect(error.message).toContain('task_status');
  });
});

describe('error mapping', () => {
  const html = (status: number) => () =>
    new Response('<html><body>Moved</body></html>', { status, headers: { 'content-type': 'text/html', location: 'https://x/' } });
  const openAi = (status: number, code: string) =>
    json(status, { error: { message: `${code} happened (request id: 123)`, type: 'comet_api_error', param: '', code } });
  const cases: { name: string; response: () => Response; code: string; retryable: boolean; upstreamCode: number | string | null }[] = [
    {
      name: '401/1002',
      response: json(401, { code: 1002, message: 'Authorization is invalid' }),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 1002,
    },
    {
      name: '429/1100 account abnormal',
      response: json(429, { code: 1100, message: 'account abnormal' }),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 1100,
    },
    {
      name: '429/1101 arrears',
      response: json(429, { code: 1101, message: 'arrears' }),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 1101,
    },
    {
      name: '429/1102 pack exhausted',
      response: json(429, { code: 1102, message: 'resource pack exhausted' }),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 1102,
    },
    {
      name: '403/1103 no permission',
      response: json(403, { code: 1103, message: 'no permission' }),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 1103,
    },
    {
      name: '429/1304 IP allow-list',
      response: json(429, { code: 1304, message: 'ip not allowed' }),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 1304,
    },
    {
      name: '400/1200',
      response: json(400, { code: 1200, message: 'invalid params' }),
      code: 'UPSTREAM_INVALID_REQUEST',
      retryable: false,
      upstreamCode: 1200,
    },
    {
      name: '404/1202',
      response: json(404, { code: 1202, message: 'bad method' }),
      code: 'UPSTREAM_INVALID_REQUEST',
      retryable: false,
      upstreamCode: 1202,
    },
    {
      name: '400/1300',
      response: json(400, { code: 1300, message: 'platform policy' }),
      code: 'UPSTREAM_CONTENT_REJECTED',
      retryable: false,
      upstreamCode: 1300,
    },
    {
      name: '200 with code 1303',
      response: json(200, { code: 1303, message: 'parallel task over resource pack limit' }),
      code: 'UPSTREAM_CONCURRENCY_LIMIT',
      retryable: true,
      upstreamCode: 1303,
    },
    {
      name: '503/5001',
      response: json(503, { code: 5001, message: 'maintenance' }),
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
      upstreamCode: 5001,
    },
    { name: '301 HTML', response: html(301), code: 'UPSTREAM_UNAVAILABLE', retryable: true, upstreamCode: null },
    {
      name: '200 not JSON',
      response: () => new Response('{"code":0,', { status: 200 }),
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
      upstreamCode: null,
    },
    {
      name: 'CometAPI 401 envelope',
      response: openAi(401, 'invalid_api_key'),
      code: 'UPSTREAM_AUTH',
      retryable: false,
      upstreamCode: 'invalid_api_key',
    },
    {
      name: 'CometAPI 429 envelope',
      response: openAi(429, 'rate_limit'),
      code: 'UPSTREAM_RATE_LIMITED',
      retryable: true,
      upstreamCode: 'rate_limit',
    },
    {
      name: 'CometAPI 400 envelope',
      response: openAi(400, 'bad_request'),
      code: 'UPSTREAM_INVALID_REQUEST',
      retryable: false,
      upstreamCode: 'bad_request',
    },
    {
      name: 'CometAPI 524 envelope',
      response: openAi(524, 'timeout'),
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
      upstreamCode: 'timeout',
    },
  ];

  it.each(cases)('$name → $code', async ({ response, code, retryable, upstreamCode }) => {
    const scripted = scriptedFetch([response]);
    const error = await rejection(
      createKlingClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k', fetch: scripted.fetch, maxAttempts: 1 }).createTask(upstreamBody()),
    );
    expect(error).toMatchObject({ code, retryable, upstreamCode });
    expect(error.message.length).toBeGreaterThan(0);
    expect(scripted.calls).toHaveLength(1);
  });

  it('uses the upstream message', async () => {
    const scripted = scriptedFetch([openAi(401, 'invalid_api_key')]);
    const error = await rejection(
      createKlingClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k', fetch: scripted.fetch, maxAttempts: 1 }).getTask({ taskId: 'x' }),
    );
    expect(error.message).toBe('invalid_api_key happened (request id: 123)');
  });

  it('honours Retry-After, bounded by backoff.maxMs', async () => {
    const ok = json(200, { code: 0, data: { task_id: 'r', task_status: 'processing' } });
    const scripted = scriptedFetch([json(429, { code: 1302, message: 'slow down' }, { 'retry-after': '1' }), ok]);
    const started = performance.now();
    const task = await createKlingClient({
      baseUrl: 'http://127.0.0.1:9',
      apiKey: 'k',
      fetch: scripted.fetch,
      backoff: { baseMs: 1, maxMs: 300 },
    }).getTask({ taskId: 'r' });
    const elapsed = performance.now() - started;
    expect(task?.status).toBe('processing');
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(900);
  });

  it('treats 404 and "task not found" answers to a query as unknown tasks', async () => {
    const scripted = scriptedFetch([
      html(404),
      json(400, { code: 1201, message: 'task not found' }),
      json(200, { code: 1203, message: 'resource not exist' }),
    ]);
    const c = createKlingClient({ baseUrl: 'http://127.0.0.1:9/', apiKey: 'k', fetch: scripted.fetch });
    expect(await c.getTask({ taskId: 'a' })).toBeNull();
    expect(await c.getTask({ externalTaskId: 'b/c d' })).toBeNull();
    expect(await c.getTask({ taskId: 'e' })).toBeNull();
    expect(scripted.calls.map((call) => call.url)).toEqual([
      'http://127.0.0.1:9/kling/v1/videos/omni-video/a',
      'http://127.0.0.1:9/kling/v1/videos/omni-video/b%2Fc%20d',
      'http://127.0.0.1:9/kling/v1/videos/omni-video/e',
    ]);
  });
});
