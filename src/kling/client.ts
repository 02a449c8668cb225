import { z } from 'zod';
import type { UpstreamCreateBody } from './input.ts';

type KlingTaskStatus = 'submitted' | 'processing' | 'succeed' | 'failed';

export type KlingTask = {
  taskId: string;
  externalTaskId: string | null;
  status: KlingTaskStatus;
  statusMessage: string | null;
  videos: { id: string; url: string; durationSeconds: number | null }[];
  finalUnitDeduction: string | null;
  createdAt: Date | null;
  updatedAt: Date | null;
  raw: unknown;
};

/** A body that holds no recognisable Kling task (a webhook or a response we cannot read). */
export class KlingPayloadError extends Error {
  readonly issues: string[];
  constructor(message: string, issues: string[] = []) {
    super(issues.length > 0 ? `${message}: ${issues.join('; ')}` : message);
    this.name = 'KlingPayloadError';
    this.issues = issues;
  }
}

const idLike = z.union([z.string().min(1), z.number()]).transform(String);
const numberLike = z.union([z.number(), z.string()]);

const status = z
  .enum(['submitted', 'processing', 'succeed', 'succeeded', 'failed'])
  // "succeeded" is the new-generation API's spelling; relays sometimes leak it into legacy bodies.
  .transform((s): KlingTaskStatus => (s === 'succeeded' ? 'succeed' : s));

const klingTaskObject = z.object({
  task_id: idLike.nullish(),
  task_status: status,
  task_status_msg: z.string().nullish(),
  task_info: z.object({ external_task_id: z.string().nullish() }).nullish(),
  task_result: z
    .object({
      videos: z.array(z.object({ id: idLike, url: z.string().min(1), duration: numberLike.nullish() })).nullish(),
    })
    .nullish(),
  final_unit_deduction: numberLike.nullish(),
  created_at: numberLike.nullish(),
  updated_at: numberLike.nullish(),
});

// new-api style relays wrap the Kling object and report their own status words.
const relayStatuses: Record<string, KlingTaskStatus> = {
  NOT_START: 'submitted',
  SUBMITTED: 'submitted',
  QUEUED: 'submitted',
  IN_PROGRESS: 'processing',
  PROCESSING: 'processing',
  SUCCESS: 'succeed',
  FAILURE: 'failed',
  FAILED: 'failed',
};

const relayWrapper = z.object({
  task_id: idLike,
  status: z.string().transform((s, ctx) => {
    const mapped = relayStatuses[s.toUpperCase()];
    if (!mapped) ctx.addIssue({ code: 'custom', message: `unknown relay status ${s}` });
    return mapped ?? 'submitted';
  }),
  fail_reason: z.string().nullish(),
});

type Layer = Record<string, unknown>;

function isObject(value: unknown): value is Layer {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// The task sits at the root (webhooks), at `data` (raw Kling envelope), or one or two levels
// deeper when CometAPI or another relay wraps the Kling answer.
function layersOf(root: unknown): Layer[] {
  const layers: Layer[] = [];
  let current = root;
  for (let depth = 0; depth < 4 && isObject(current); depth++) {
    layers.push(current);
    current = current.data;
  }
  return layers;
}

function toDate(value: number | string | null | undefined): Date | null {
  if (value == null || value === '') return null;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) return null;
  // Kling sends Unix milliseconds; a value this small can only be seconds.
  return new Date(n < 1e11 ? n * 1000 : n);
}

function emptyToNull(value: string | number | null | undefined): string | null {
  if (value == null) return null;
  const s = String(value);
  return s === '' ? null : s;
}

function describe(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/**
 * Finds and normalizes the Kling task in a response or webhook body of any known shape.
 * The task id is taken from the outermost layer that has one: that is the id the service we
 * talk to issued (a relay's own id when it wraps Kling), hence the one it can be queried by.
 */
function readKlingTask(root: unknown): KlingTask {
  const layers = layersOf(root);
  const outerId = layers.map((l) => idLike.safeParse(l.task_id)).find((r) => r.success)?.data;
  const klingLayer = layers.find((l) => typeof l.task_status === 'string');
  if (klingLayer) {
    const parsed = klingTaskObject.safeParse(klingLayer);
    if (!parsed.success) throw new KlingPayloadError('malformed Kling task', describe(parsed.error));
    const t = parsed.data;
    const taskId = outerId ?? t.task_id;
    if (!taskId) throw new KlingPayloadError('Kling task without task_id');
    return {
      taskId,
      externalTaskId: emptyToNull(t.task_info?.external_task_id),
      status: t.task_status,
      statusMessage: emptyToNull(t.task_status_msg),
      videos: (t.task_result?.videos ?? []).map((v) => {
        const seconds = v.duration == null || v.duration === '' ? Number.NaN : Number(v.duration);
        return { id: v.id, url: v.url, durationSeconds: Number.isFinite(seconds) ? seconds : null };
      }),
      finalUnitDeduction: emptyToNull(t.final_unit_deduction),
      createdAt: toDate(t.created_at),
      updatedAt: toDate(t.updated_at),
      raw: root,
    };
  }
  const wrapperLayer = layers.find((l) => typeof l.status === 'string' && l.task_id != null);
  if (wrapperLayer) {
    const parsed = relayWrapper.safeParse(wrapperLayer);
    if (!parsed.success) throw new KlingPayloadError('malformed relay task', describe(parsed.error));
    return {
      taskId: parsed.data.task_id,
      externalTaskId: null,
      status: parsed.data.status,
      statusMessage: emptyToNull(parsed.data.fail_reason),
      videos: [],
      finalUnitDeduction: null,
      createdAt: null,
      updatedAt: null,
      raw: root,
    };
  }
  throw new KlingPayloadError('no Kling task found at the root, data, data.data or data.data.data');
}

/** Parses the body of a Kling status callback (the raw payload or a relay's wrapped form). */
export function parseKlingCallback(body: unknown): KlingTask {
  return readKlingTask(body);
}

export type KlingErrorCode =
  | 'UPSTREAM_AUTH'
  | 'UPSTREAM_RATE_LIMITED'
  | 'UPSTREAM_CONCURRENCY_LIMIT'
  | 'UPSTREAM_CONTENT_REJECTED'
  | 'UPSTREAM_INVALID_REQUEST'
  | 'UPSTREAM_UNAVAILABLE';

const RETRYABLE: ReadonlySet<KlingErrorCode> = new Set([
  'UPSTREAM_RATE_LIMITED',
  'UPSTREAM_CONCURRENCY_LIMIT',
  'UPSTREAM_UNAVAILABLE',
]);

/** An upstream failure with a stable code; `message` is the upstream's own wording. */
export class KlingError extends Error {
  readonly code: KlingErrorCode;
  readonly retryable: boolean;
  /** The request may have reached the upstream (and created a task) although we saw no answer. */
  readonly ambiguous: boolean;
  readonly httpStatus: number | null;
  readonly upstreamCode: number | string | null;
  readonly retryAfterMs: number | null;
  constructor(init: {
    code: KlingErrorCode;
    message: string;
    ambiguous?: boolean;
    httpStatus?: number | null;
    upstreamCode?: number | string | null;
    retryAfterMs?: number | null;
    cause?: unknown;
  }) {
    super(init.message, { cause: init.cause });
    this.name = 'KlingError';
    this.code = init.code;
    this.retryable = RETRYABLE.has(init.code);
    this.ambiguous = init.ambiguous ?? false;
    this.httpStatus = init.httpStatus ?? null;
    this.upstreamCode = init.upstreamCode ?? null;
    this.retryAfterMs = init.retryAfterMs ?? null;
  }
}

function codeForKlingCode(code: number): KlingErrorCode | null {
  if (code === 1302) return 'UPSTREAM_RATE_LIMITED';
  if (code === 1303) return 'UPSTREAM_CONCURRENCY_LIMIT';
  // 1304 is the IP allow-list: an account setting, like the 10xx/11xx account problems.
  if (code === 1304 || (code >= 1000 && code < 1200)) return 'UPSTREAM_AUTH';
  if (code >= 1200 && code < 1300) return 'UPSTREAM_INVALID_REQUEST';
  if (code >= 1300 && code < 1400) return 'UPSTREAM_CONTENT_REJECTED';
  if (code >= 5000 && code < 6000) return 'UPSTREAM_UNAVAILABLE';
  return null;
}

function codeForHttpStatus(status: number): KlingErrorCode {
  if (status === 401 || status === 403) return 'UPSTREAM_AUTH';
  if (status === 429) return 'UPSTREAM_RATE_LIMITED';
  if (status === 408 || status === 425) return 'UPSTREAM_UNAVAILABLE';
  if (status >= 400 && status < 500) return 'UPSTREAM_INVALID_REQUEST';
  // 3xx (CometAPI answers a wrong path with a redirect to HTML), 5xx, and 2xx bodies with an error.
  return 'UPSTREAM_UNAVAILABLE';
}

const envelope = z.object({
  code: z.union([z.number(), z.string()]).nullish(),
  message: z.string().nullish(),
  msg: z.string().nullish(),
  // CometAPI's own (OpenAI-style) error body.
  error: z
    .object({ message: z.string().nullish(), code: z.union([z.string(), z.number()]).nullish() })
    .nullish()
    .catch(null),
});

type Op = 'create' | 'get';

function retryAfterMs(header: string | null): number | null {
  if (!header) return null;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/** Returns null for a success envelope, else the error it carries. */
function errorOf(op: Op, status: number, json: unknown, headers: Headers): KlingError | null {
  const parsed = envelope.safeParse(json);
  const env = parsed.success ? parsed.data : { code: null, message: null, msg: null, error: null };
  const numeric =
    typeof env.code === 'number' ? env.code : typeof env.code === 'string' && /^\d+$/.test(env.code) ? Number(env.code) : null;
  const ok = status >= 200 && status < 300 && (numeric === null || numeric === 0) && !env.error;
  if (ok) return null;
  const code = (numeric !== null && numeric !== 0 ? codeForKlingCode(numeric) : null) ?? codeForHttpStatus(status);
  return new KlingError({
    code,
    message: env.error?.message || env.message || env.msg || `upstream answered HTTP ${status}`,
    // An internal error after the upstream read the create may still have created the task.
    ambiguous: op === 'create' && code === 'UPSTREAM_UNAVAILABLE' && (status >= 500 || status < 300),
    httpStatus: status,
    upstreamCode: numeric !== null && numeric !== 0 ? numeric : (env.error?.code ?? (typeof env.code === 'string' ? env.code : null)),
    retryAfterMs: retryAfterMs(headers.get('retry-after')),
  });
}

// Errors that prove the request never left this host; everything else may have reached the upstream.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function networkError(op: Op, error: unknown, timeoutMs: number): KlingError {
  if (error instanceof Error && error.name === 'TimeoutError') {
    return new KlingError({
      code: 'UPSTREAM_UNAVAILABLE',
      message: `upstream did not answer within ${timeoutMs} ms`,
      ambiguous: op === 'create',
      cause: error,
    });
  }
  const cause = error instanceof Error ? (error.cause as { code?: unknown; errors?: { code?: unknown }[] } | undefined) : undefined;
  const sysCode = cause?.code ?? cause?.errors?.[0]?.code;
  const detail = typeof sysCode === 'string' ? sysCode : error instanceof Error ? error.message : String(error);
  return new KlingError({
    code: 'UPSTREAM_UNAVAILABLE',
    message: `upstream connection failed (${detail})`,
    ambiguous: op === 'create' && !(typeof sysCode === 'string' && NOT_SENT.has(sysCode)),
    cause: error,
  });
}

function isNotFound(error: KlingError): boolean {
  return (
    error.httpStatus === 404 ||
    error.upstreamCode === 1203 ||
    (error.code === 'UPSTREAM_INVALID_REQUEST' && /not\s*found|does\s*not\s*exist|不存在/i.test(error.message))
  );
}

function isDuplicateExternalId(error: KlingError): boolean {
  return (
    error.code === 'UPSTREAM_INVALID_REQUEST' &&
    /external[\s_-]*task[\s_-]*id/i.test(error.message) &&
    /duplicat|already\s*exist|exists|重复|已存在/i.test(error.message)
  );
}

export type KlingClient = {
  createTask(body: UpstreamCreateBody): Promise<KlingTask>;
  /** null when the upstream does not know the task */
  getTask(id: { taskId: string } | { externalTaskId: string }): Promise<KlingTask | null>;
};

export type KlingClientOptions = {
  baseUrl: string;
  apiKey: string;
  timeoutMs?: number;
  maxAttempts?: number;
  backoff?: { baseMs: number; maxMs: number };
  fetch?: typeof fetch;
  onCall?: (event: { op: Op; outcome: string; durationMs: number }) => void;
};

const CONCURRENCY_MIN_WAIT_MS = 1000;

export function createKlingClient(opts: KlingClientOptions): KlingClient {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const maxAttempts = opts.maxAttempts ?? 4;
  const backoff = opts.backoff ?? { baseMs: 250, maxMs: 5000 };
  const doFetch = opts.fetch ?? fetch;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError('maxAttempts must be an integer >= 1');
  const endpoint = `${opts.baseUrl.replace(/\/+$/, '')}/kling/v1/videos/omni-video`;

  async function send(op: Op, url: string, body?: UpstreamCreateBody): Promise<KlingTask> {
    const started = performance.now();
    let outcome = 'ok';
    try {
      let response: Response;
      let text: string;
      // One deadline covers connecting, sending and reading the whole answer.
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        response = await doFetch(url, {
          method: body ? 'POST' : 'GET',
          headers: {
            authorization: `Bearer ${opts.apiKey}`,
            accept: 'application/json',
            ...(body ? { 'content-type': 'application/json' } : {}),
          },
          body: body ? JSON.stringify(body) : null,
          // A redirect means a wrong base URL; following it would carry our key elsewhere.
          redirect: 'manual',
          signal,
        });
        text = await response.text();
      } catch (error) {
        throw networkError(op, error, timeoutMs);
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        const { status } = response;
        throw new KlingError({
          code: codeForHttpStatus(status) === 'UPSTREAM_AUTH' ? 'UPSTREAM_AUTH' : 'UPSTREAM_UNAVAILABLE',
          message: `upstream answered HTTP ${status} with a body that is not JSON`,
          ambiguous: op === 'create' && (status >= 500 || status < 300),
          httpStatus: status,
          retryAfterMs: retryAfterMs(response.headers.get('retry-after')),
        });
      }
      const failure = errorOf(op, response.status, json, response.headers);
      if (failure) throw failure;
      try {
        return readKlingTask(json);
      } catch (error) {
        throw new KlingError({
          code: 'UPSTREAM_UNAVAILABLE',
          message: `upstream answer not understood: ${error instanceof Error ? error.message : String(error)}`,
          // A create may well have succeeded even though we cannot read the answer.
          ambiguous: op === 'create',
          httpStatus: response.status,
          cause: error,
        });
      }
    } catch (error) {
      outcome = error instanceof KlingError ? (op === 'get' && isNotFound(error) ? 'not_found' : error.code) : 'error';
      throw error;
    } finally {
      opts.onCall?.({ op, outcome, durationMs: performance.now() - started });
    }
  }

  function delayBeforeRetry(retry: number, last: KlingError): number {
    // Full jitter: uniform in [0, min(max, base * 2^(retry-1))].
    let delay = Math.random() * Math.min(backoff.maxMs, backoff.baseMs * 2 ** (retry - 1));
    if (last.retryAfterMs !== null) delay = Math.min(backoff.maxMs, Math.max(delay, last.retryAfterMs));
    if (last.code === 'UPSTREAM_CONCURRENCY_LIMIT') delay = Math.max(delay, CONCURRENCY_MIN_WAIT_MS);
    return delay;
  }

  async function withRetries<T>(attempt: () => Promise<T>, beforeRetry?: () => Promise<T | undefined>): Promise<T> {
    let last: KlingError | undefined;
    for (let n = 1; n <= maxAttempts; n++) {
      if (last) {
        const delay = delayBeforeRetry(n - 1, last);
        await new Promise((resolve) => setTimeout(resolve, delay));
        const settled = await beforeRetry?.();
        if (settled !== undefined) return settled;
      }
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof KlingError) || !error.retryable) throw error;
        last = error;
      }
    }
    throw last;
  }

  const urlFor = (id: string) => `${endpoint}/${encodeURIComponent(id)}`;

  async function getOnce(id: string): Promise<KlingTask | null> {
    try {
      return await send('get', urlFor(id));
    } catch (error) {
      if (error instanceof KlingError && isNotFound(error)) return null;
      throw error;
    }
  }

  async function getTask(id: { taskId: string } | { externalTaskId: string }): Promise<KlingTask | null> {
    // Kling resolves the path segment as either id kind.
    return withRetries(() => getOnce('taskId' in id ? id.taskId : id.externalTaskId));
  }

  async function createTask(body: UpstreamCreateBody): Promise<KlingTask> {
    const externalId = body.external_task_id;
    // Before resubmitting, ask whether the failed attempt reached the upstream after all. If the
    // lookup itself fails, resubmitting is still safe: the upstream refuses a duplicate external id.
    const alreadyCreated = async () => (await getOnce(externalId).catch(() => null)) ?? undefined;
    let reachedUpstream = false;
    const attempt = async () => {
      try {
        return await send('create', endpoint, body);
      } catch (error) {
        if (error instanceof KlingError && error.ambiguous) reachedUpstream = true;
        throw error;
      }
    };
    try {
      return await withRetries(attempt, alreadyCreated);
    } catch (error) {
      if (!(error instanceof KlingError)) throw error;
      if (reachedUpstream && !error.retryable && !error.ambiguous && !isDuplicateExternalId(error)) {
        // A refusal of a retry says nothing of an earlier attempt that may have been accepted: ask.
        let existing: KlingTask | null;
        try {
          existing = await getTask({ externalTaskId: externalId });
        } catch (lookupError) {
          throw new KlingError({
            code: 'UPSTREAM_UNAVAILABLE',
            message: `a retried create was refused (${error.message}) and whether an earlier attempt was accepted is unknown`,
            ambiguous: true,
            httpStatus: error.httpStatus,
            upstreamCode: error.upstreamCode,
            cause: lookupError,
          });
        }
        if (existing) return existing;
        throw error;
      }
      if (!isDuplicateExternalId(error)) throw error;
      const existing = await getTask({ externalTaskId: externalId }).catch(() => null);
      if (existing) return existing;
      throw new KlingError({
        code: 'UPSTREAM_UNAVAILABLE',
        message: `upstream reports external_task_id ${externalId} as taken but the task could not be looked up`,
        ambiguous: true,
        httpStatus: error.httpStatus,
        upstreamCode: error.upstreamCode,
        cause: error,
      });
    }
  }

  return { createTask, getTask };
}
