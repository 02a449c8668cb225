import { createHash, randomInt, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { bearerToken } from '../http/bearer.ts';
import { BodyTooLargeError, readBody } from '../http/body.ts';
import { parseRange } from '../http/range.ts';
import { sendJson } from '../http/respond.ts';

/*
 * An in-process stand-in for CometAPI's Kling Omni endpoints that speaks the same HTTP contract
 * (reference §1–§3 and §5), so the real client code runs in tests, benchmarks and keyless dev.
 *
 * Task failure is steered by the prompt: a prompt containing `[[fail]]` or `[[fail:reason]]`
 * ends `failed` with that reason as task_status_msg. A marker in the prompt works across
 * processes and needs no shared state with the test that wants it.
 */

const FAULT_KINDS = [
  'http500',
  'http429_1302',
  'http429_1303',
  'http400_1301',
  'http401',
  'hang',
  'slow',
  'reset',
  'drop_after_accept',
] as const;

const faultSchema = z.object({
  op: z.enum(['create', 'get', 'result']),
  kind: z.enum(FAULT_KINDS),
  ms: z.number().int().min(0).max(600_000).optional(),
  count: z.number().int().min(1).max(1_000_000).optional(),
});

/** A one-shot fault applied to the next `count` (default 1) calls of `op`. */
export type SimulatorFault = z.infer<typeof faultSchema>;

type SimulatorStats = {
  createRequests: number;
  createsAccepted: number;
  byExternalTaskId: Record<string, { requests: number; accepted: number }>;
  getRequests: number;
  resultRequests: number;
  callbacksSent: number;
  callbacksFailed: number;
  callbacksDropped: number;
};

export type Simulator = {
  handle: (req: IncomingMessage, res: ServerResponse) => void;
  listen(port: number, host?: string): Promise<{ url: string }>;
  close(): Promise<void>;
  /** Queue of one-shot faults; push to inject. */
  faults: SimulatorFault[];
  /**
   * `callbacks: false` drops callbacks (counted in stats.callbacksDropped) while it is off, and
   * for good for tasks created meanwhile, so a test can lose a task's callbacks entirely.
   */
  settings: { callbacks: boolean };
  readonly stats: SimulatorStats;
  reset(): void;
};

type SimulatorOptions = {
  apiKey?: string;
  /** Milliseconds after creation at which a task turns processing, and reaches its final state. */
  delays?: { processingMs: number; finishMs: number };
  videoBytes?: number;
  publicBaseUrl?: string;
};

type Status = 'submitted' | 'processing' | 'succeed' | 'failed';

type SimTask = {
  id: string;
  account: string;
  externalTaskId: string | null;
  status: Status;
  statusMessage: string;
  createdAt: number;
  updatedAt: number;
  callbackUrl: string | null;
  durationSeconds: number;
  units: number;
  failWith: string | null;
  /** created while callbacks were switched off: this task never calls back */
  silent: boolean;
  watermark: boolean;
  videoId: string;
  resultBase: string;
  callbacks: Promise<void>;
};

const CREATE_PATH = '/kling/v1/videos/omni-video';
const MAX_BODY_BYTES = 128 * 1024 * 1024;
const CALLBACK_TIMEOUT_MS = 5000;
const CHUNK_BYTES = 64 * 1024;
const HEADER_BYTES = 32;
// Units per output second (reference §5 price table).
const RATES = { std: 0.6, pro: 0.8, stdWithVideo: 0.9, proWithVideo: 1.2 };

const createBodySchema = z.object({
  model_name: z.enum(['kling-video-o1']).default('kling-video-o1'),
  prompt: z
    .string()
    .refine((p) => p.trim().length > 0, 'prompt is required')
    .refine((p) => [...p].length <= 2500, 'prompt must be at most 2500 characters'),
  image_list: z
    .array(z.object({ image_url: z.string().min(1), type: z.enum(['first_frame', 'end_frame']).optional() }))
    .optional(),
  element_list: z
    .array(z.object({ element_id: z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]) }))
    .optional(),
  video_list: z
    .array(
      z.object({
        video_url: z.url({ protocol: /^https?$/ }),
        refer_type: z.enum(['feature', 'base']),
        keep_original_sound: z.enum(['yes', 'no']).optional(),
      }),
    )
    .max(1, 'at most one video is supported')
    .optional(),
  mode: z.enum(['std', 'pro']).default('pro'),
  aspect_ratio: z.enum(['16:9', '9:16', '1:1']).optional(),
  duration: z.enum(['3', '4', '5', '6', '7', '8', '9', '10']).optional(),
  watermark_info: z.object({ enabled: z.boolean() }).optional(),
  callback_url: z.url({ protocol: /^https?$/ }).optional(),
  external_task_id: z.string().min(1).optional(),
});

const settingsSchema = z.object({ callbacks: z.boolean().optional() });

function klingError(code: number, message: string) {
  return { code, message, request_id: randomUUID() };
}

const FAULT_RESPONSES: Partial<Record<SimulatorFault['kind'], [number, number, string]>> = {
  http500: [500, 5000, 'Internal server error'],
  http429_1302: [429, 1302, 'API request rate limit exceeded, please try again later'],
  http429_1303: [429, 1303, 'parallel task over resource pack limit'],
  http400_1301: [400, 1301, 'Failure to pass the risk control system, please modify the input'],
  http401: [401, 1000, 'Authentication failed'],
};

// --- result video bytes -------------------------------------------------------------------

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

function* videoChunks(seed: number, size: number, start: number, end: number): Generator<Buffer> {
  for (let at = start; at < end; at += CHUNK_BYTES) yield videoSlice(seed, size, at, Math.min(end, at + CHUNK_BYTES));
}

// --- the simulator ------------------------------------------------------------------------

function units(mode: 'std' | 'pro', withVideo: boolean, seconds: number): string {
  const rate = withVideo ? (mode === 'std' ? RATES.stdWithVideo : RATES.proWithVideo) : RATES[mode];
  return String(Math.round(rate * seconds * 1000) / 1000);
}

function newTaskId(): string {
  // Kling task ids are long numeric strings; time plus randomness survives simulator restarts.
  return `${Date.now()}${String(randomInt(0, 1_000_000)).padStart(6, '0')}`;
}

function emptyStats(): SimulatorStats {
  return {
    createRequests: 0,
    createsAccepted: 0,
    byExternalTaskId: {},
    getRequests: 0,
    resultRequests: 0,
    callbacksSent: 0,
    callbacksFailed: 0,
    callbacksDropped: 0,
  };
}

export function createSimulator(options: SimulatorOptions = {}): Simulator {
  const delays = options.delays ?? { processingMs: 1500, finishMs: 4000 };
  const videoBytes = options.videoBytes ?? 64 * 1024;
  if (!Number.isInteger(videoBytes) || videoBytes < HEADER_BYTES || videoBytes > 0xffffffff) {
    throw new RangeError(`videoBytes must be an integer from ${HEADER_BYTES} to ${0xffffffff}`);
  }
  const tasks = new Map<string, SimTask>();
  const byExternalId = new Map<string, SimTask>(); // key: account + '\n' + external id
  const timers = new Set<NodeJS.Timeout>();
  const openResponses = new Set<ServerResponse>();
  const callbackAborts = new Set<AbortController>();
  let stats = emptyStats();
  let server: Server | null = null;
  let listenUrl: string | null = null;
  let closed = false;

  const sim: Simulator = {
    handle,
    listen,
    close,
    faults: [],
    settings: { callbacks: true },
    get stats() {
      return structuredClone(stats);
    },
    reset,
  };

  function schedule(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  }

  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => schedule(ms, resolve));
  }

  function reset(): void {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const ac of callbackAborts) ac.abort();
    tasks.clear();
    byExternalId.clear();
    sim.faults.length = 0;
    sim.settings.callbacks = true;
    stats = emptyStats();
  }

  function takeFault(op: SimulatorFault['op']): SimulatorFault | null {
    const i = sim.faults.findIndex((f) => f.op === op);
    const fault = sim.faults[i];
    if (!fault) return null;
    const remaining = (fault.count ?? 1) - 1;
    if (remaining > 0) sim.faults[i] = { ...fault, count: remaining };
    else sim.faults.splice(i, 1);
    return fault;
  }

  /** Applies a fault; returns true when the request has been fully dealt with. */
  async function applyFault(fault: SimulatorFault | null, res: ServerResponse): Promise<boolean> {
    if (!fault) return false;
    const canned = FAULT_RESPONSES[fault.kind];
    if (canned) {
      sendJson(res, canned[0], klingError(canned[1], canned[2]));
      return true;
    }
    switch (fault.kind) {
      case 'hang':
        return true; // answered never; close() destroys the socket
      case 'slow':
        await wait(fault.ms ?? 1000);
        return false;
      case 'reset':
        res.socket?.destroy();
        return true;
      default:
        return false; // drop_after_accept is acted on by the create handler
    }
  }

  function authenticate(req: IncomingMessage, res: ServerResponse): string | null {
    const token = bearerToken(req.headers.authorization);
    if (!token) sendJson(res, 401, klingError(1001, 'Authorization is empty'));
    else if (options.apiKey !== undefined && token !== options.apiKey) sendJson(res, 401, klingError(1000, 'Authentication failed'));
    else return token;
    return null;
  }

  function taskInfo(task: SimTask) {
    return task.externalTaskId === null ? {} : { external_task_id: task.externalTaskId };
  }

  function resultUrl(task: SimTask, watermark: boolean): string {
    return `${task.resultBase}/results/${encodeURIComponent(task.id)}.mp4${watermark ? '?watermark=1' : ''}`;
  }

  // The callback example of the reference (§3) carries no watermark_url; the query (§2a) does.
  function taskResult(task: SimTask, withWatermark: boolean) {
    if (task.status !== 'succeed') return {};
    const video = {
      id: task.videoId,
      url: resultUrl(task, false),
      ...(withWatermark && task.watermark ? { watermark_url: resultUrl(task, true) } : {}),
      duration: task.durationSeconds.toFixed(1),
    };
    return { videos: [video] };
  }

  function isFinal(task: SimTask): boolean {
    return task.status === 'succeed' || task.status === 'failed';
  }

  function queryData(task: SimTask) {
    return {
      task_id: task.id,
      task_status: task.status,
      task_status_msg: task.statusMessage,
      task_info: taskInfo(task),
      task_result: taskResult(task, true),
      watermark_info: { enabled: task.watermark },
      ...(isFinal(task) ? { final_unit_deduction: task.status === 'succeed' ? String(task.units) : '0' } : {}),
      created_at: task.createdAt,
      updated_at: task.updatedAt,
    };
  }

  function callbackBody(task: SimTask) {
    return {
      task_id: task.id,
      task_status: task.status,
      task_status_msg: task.statusMessage,
      created_at: task.createdAt,
      updated_at: task.updatedAt,
      ...(isFinal(task) ? { final_unit_deduction: task.status === 'succeed' ? String(task.units) : '0' } : {}),
      task_info: taskInfo(task),
      task_result: taskResult(task, false),
    };
  }

  async function postCallback(url: string, payload: string): Promise<void> {
    if (closed) return;
    const abort = new AbortController();
    callbackAborts.add(abort);
    // Counted before sending, so a receiver that got the body can already see it in the stats.
    stats.callbacksSent++;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: payload,
        signal: AbortSignal.any([abort.signal, AbortSignal.timeout(CALLBACK_TIMEOUT_MS)]),
      });
      await response.arrayBuffer();
      if (!response.ok) stats.callbacksFailed++;
    } catch {
      stats.callbacksFailed++;
    } finally {
      callbackAborts.delete(abort);
    }
  }

  function notify(task: SimTask): void {
    if (task.callbackUrl === null) return;
    if (task.silent || !sim.settings.callbacks) {
      stats.callbacksDropped++;
      return;
    }
    const url = task.callbackUrl;
    const payload = JSON.stringify(callbackBody(task));
    // One at a time per task, so the receiver sees status changes in the order they happened.
    task.callbacks = task.callbacks.then(() => postCallback(url, payload));
  }

  function advance(task: SimTask, status: Status): void {
    if (tasks.get(task.id) !== task) return; // reset since
    task.status = status;
    task.updatedAt = Date.now();
    if (status === 'failed') task.statusMessage = task.failWith ?? 'Task failed';
    notify(task);
  }

  function baseUrlFor(req: IncomingMessage): string {
    const base = options.publicBaseUrl ?? listenUrl ?? `http://${req.headers.host ?? '127.0.0.1'}`;
    return base.replace(/\/+$/, '');
  }

  async function handleCreate(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.createRequests++;
    const account = authenticate(req, res);
    if (account === null) return;
    let raw: unknown;
    try {
      raw = JSON.parse((await readBody(req, MAX_BODY_BYTES)).toString('utf8'));
    } catch (error) {
      if (error instanceof BodyTooLargeError) sendJson(res, 413, klingError(1200, 'request body too large'));
      else sendJson(res, 400, klingError(1200, 'request body is not valid JSON'));
      return;
    }
    const externalRaw = (raw as { external_task_id?: unknown } | null)?.external_task_id;
    const perExternal = typeof externalRaw === 'string' ? (stats.byExternalTaskId[externalRaw] ??= { requests: 0, accepted: 0 }) : null;
    if (perExternal) perExternal.requests++;

    const fault = takeFault('create');
    if (await applyFault(fault, res)) return;
    const dropAfterAccept = fault?.kind === 'drop_after_accept';

    const parsed = createBodySchema.safeParse(raw);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      const where = first && first.path.length > 0 ? `${first.path.join('.')}: ` : '';
      if (dropAfterAccept) res.socket?.destroy();
      else sendJson(res, 400, klingError(1201, `invalid parameter: ${where}${first?.message ?? 'invalid body'}`));
      return;
    }
    const body = parsed.data;
    const externalKey = body.external_task_id === undefined ? null : `${account}\n${body.external_task_id}`;
    if (externalKey !== null && byExternalId.has(externalKey)) {
      if (dropAfterAccept) res.socket?.destroy();
      else sendJson(res, 400, klingError(1201, 'external_task_id already exists'));
      return;
    }

    const now = Date.now();
    const hasBase = body.video_list?.some((v) => v.refer_type === 'base') ?? false;
    const durationSeconds = hasBase ? 5 : Number(body.duration ?? '5');
    const failMarker = /\[\[fail(?::([^\]]*))?\]\]/.exec(body.prompt);
    let id = newTaskId();
    while (tasks.has(id)) id = newTaskId();
    const task: SimTask = {
      id,
      account,
      externalTaskId: body.external_task_id ?? null,
      status: 'submitted',
      statusMessage: '',
      createdAt: now,
      updatedAt: now,
      callbackUrl: body.callback_url ?? null,
      durationSeconds,
      units: Number(units(body.mode, (body.video_list?.length ?? 0) > 0, durationSeconds)),
      failWith: failMarker ? failMarker[1] || 'The generated video did not pass content review' : null,
      silent: !sim.settings.callbacks,
      watermark: body.watermark_info?.enabled ?? false,
      videoId: randomUUID(),
      resultBase: baseUrlFor(req),
      callbacks: Promise.resolve(),
    };
    tasks.set(id, task);
    if (externalKey !== null) byExternalId.set(externalKey, task);
    stats.createsAccepted++;
    if (perExternal) perExternal.accepted++;
    notify(task);
    schedule(delays.processingMs, () => advance(task, 'processing'));
    schedule(Math.max(delays.finishMs, delays.processingMs), () => advance(task, task.failWith === null ? 'succeed' : 'failed'));

    if (dropAfterAccept) {
      res.socket?.destroy();
      return;
    }
    sendJson(res, 200, {
      code: 0,
      message: 'SUCCEED',
      request_id: randomUUID(),
      data: {
        task_id: task.id,
        task_info: taskInfo(task),
        task_status: task.status,
        created_at: task.createdAt,
        updated_at: task.updatedAt,
      },
    });
  }

  async function handleGet(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    stats.getRequests++;
    const account = authenticate(req, res);
    if (account === null) return;
    const fault = takeFault('get');
    if (await applyFault(fault, res)) return;
    if (fault?.kind === 'drop_after_accept') {
      res.socket?.destroy();
      return;
    }
    const byId = tasks.get(id);
    const task = byId?.account === account ? byId : byExternalId.get(`${account}\n${id}`);
    if (!task) {
      sendJson(res, 404, klingError(1203, 'task not found'));
      return;
    }
    sendJson(res, 200, { code: 0, message: 'SUCCEED', request_id: randomUUID(), data: queryData(task) });
  }

  async function handleResult(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    stats.resultRequests++;
    const fault = takeFault('result');
    if (await applyFault(fault, res)) return;
    if (fault?.kind === 'drop_after_accept') {
      res.socket?.destroy();
      return;
    }
    const task = tasks.get(id);
    if (!task || task.status !== 'succeed') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const size = videoBytes;
    const range = parseRange(req.headers.range, size);
    const common = { 'content-type': 'video/mp4', 'accept-ranges': 'bytes', etag: `"${task.videoId}"` };
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...common, 'content-range': `bytes */${size}`, 'content-length': 0 }).end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    res.writeHead(range ? 206 : 200, {
      ...common,
      'content-length': end - start + 1,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // Generated chunk by chunk with backpressure: a 200 MB result never sits in memory.
    await pipeline(Readable.from(videoChunks(seedOf(task.id), size, start, end + 1)), res).catch(() => {});
  }

  async function handleControl(req: IncomingMessage, res: ServerResponse, action: string): Promise<void> {
    if (req.method === 'GET' && action === 'stats') return sendJson(res, 200, sim.stats);
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method not allowed' });
    if (action === 'reset') {
      reset();
      return sendJson(res, 200, { ok: true });
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, MAX_BODY_BYTES)).toString('utf8') || '{}');
    } catch {
      return sendJson(res, 400, { error: 'body is not JSON' });
    }
    if (action === 'faults') {
      const parsed = z.union([faultSchema, z.array(faultSchema)]).safeParse(body);
      if (!parsed.success) return sendJson(res, 400, { error: z.prettifyError(parsed.error) });
      sim.faults.push(...(Array.isArray(parsed.data) ? parsed.data : [parsed.data]));
      return sendJson(res, 200, { queued: sim.faults.length });
    }
    if (action === 'settings') {
      const parsed = settingsSchema.safeParse(body);
      if (!parsed.success) return sendJson(res, 400, { error: z.prettifyError(parsed.error) });
      if (parsed.data.callbacks !== undefined) sim.settings.callbacks = parsed.data.callbacks;
      return sendJson(res, 200, sim.settings);
    }
    sendJson(res, 404, { error: 'unknown control route' });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { pathname } = new URL(req.url ?? '/', 'http://simulator');
    const method = req.method ?? 'GET';
    if (pathname === CREATE_PATH && method === 'POST') return handleCreate(req, res);
    if (pathname.startsWith(`${CREATE_PATH}/`) && method === 'GET') {
      return handleGet(req, res, decodeURIComponent(pathname.slice(CREATE_PATH.length + 1)));
    }
    const result = /^\/results\/([^/]+)\.mp4$/.exec(pathname);
    if (result?.[1] && (method === 'GET' || method === 'HEAD')) return handleResult(req, res, decodeURIComponent(result[1]));
    const control = /^\/__control\/([a-z]+)$/.exec(pathname);
    if (control?.[1]) return handleControl(req, res, control[1]);
    sendJson(res, 404, klingError(1202, `no route for ${method} ${pathname}`));
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    if (closed) {
      res.socket?.destroy();
      return;
    }
    openResponses.add(res);
    res.on('close', () => openResponses.delete(res));
    route(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, klingError(5000, `simulator error: ${String(error)}`));
      else res.destroy();
    });
  }

  async function listen(port: number, host = '127.0.0.1'): Promise<{ url: string }> {
    if (server) throw new Error('simulator is already listening');
    const s = createServer(handle);
    server = s;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host, () => {
        s.off('error', reject);
        resolve();
      });
    });
    const address = s.address() as AddressInfo;
    const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    listenUrl = `http://${hostPart}:${address.port}`;
    return { url: listenUrl };
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    reset();
    for (const res of openResponses) res.destroy();
    openResponses.clear();
    const s = server;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  return sim;
}
