import type { UpstreamCreateBody } from './body.ts';
import { errorOf, isDuplicateExternalId, isNotFound, KlingError, networkError, notJsonError, unreadableAnswerError } from './errors.ts';
import type { KlingOp } from './errors.ts';
import { readKlingTask } from './payload.ts';
import type { KlingTask } from './payload.ts';

/** Tighter bounds for one call than the client's own (e.g. a quick look that must not hold a caller). */
export type CallLimits = { timeoutMs?: number; maxAttempts?: number };

/**
 * `retryThrottled: false`: a 1303 or 429 refusal of a create that has not reached the upstream is
 * thrown at once instead of retried (the dispatcher puts the task back in its queue and shrinks
 * the budget); after an ambiguous attempt, throttles are still retried as usual.
 */
export type CreateOptions = { retryThrottled?: boolean };

/** A refusal for load (concurrency 1303 or rate 1302/429): nothing was created. */
export function isThrottle(error: unknown): error is KlingError {
  return error instanceof KlingError && (error.code === 'UPSTREAM_CONCURRENCY_LIMIT' || error.code === 'UPSTREAM_RATE_LIMITED');
}

export type KlingClient = {
  createTask(body: UpstreamCreateBody, options?: CreateOptions): Promise<KlingTask>;
  /** null when the upstream does not know the task */
  getTask(id: { taskId: string } | { externalTaskId: string }, limits?: CallLimits): Promise<KlingTask | null>;
  /**
   * The longest a createTask call can take: every attempt and every lookup timing out, every
   * wait between attempts at its longest. A create still running is over by then.
   */
  readonly createTimeLimitMs: number;
};

export type KlingClientOptions = {
  baseUrl: string;
  apiKey: string;
  timeoutMs?: number;
  maxAttempts?: number;
  backoff?: { baseMs: number; maxMs: number };
  fetch?: typeof fetch;
  onCall?: (event: { op: KlingOp; outcome: string; durationMs: number }) => void;
};

type Transport = {
  apiKey: string;
  timeoutMs: number;
  fetch: typeof fetch;
  onCall: KlingClientOptions['onCall'];
};

type RetryPolicy = { maxAttempts: number; backoff: { baseMs: number; maxMs: number } };

const CONCURRENCY_MIN_WAIT_MS = 1000;

/** One exchange with the upstream: the task it answered with, or a KlingError. */
async function send(transport: Transport, op: KlingOp, url: string, body?: UpstreamCreateBody): Promise<KlingTask> {
  const { timeoutMs, fetch: doFetch } = transport;
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
          authorization: `Bearer ${transport.apiKey}`,
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
      throw notJsonError(op, response);
    }
    const failure = errorOf(op, response.status, json, response.headers);
    if (failure) throw failure;
    try {
      return readKlingTask(json);
    } catch (error) {
      throw unreadableAnswerError(op, response.status, error);
    }
  } catch (error) {
    outcome = error instanceof KlingError ? (op === 'get' && isNotFound(error) ? 'not_found' : error.code) : 'error';
    throw error;
  } finally {
    transport.onCall?.({ op, outcome, durationMs: performance.now() - started });
  }
}

/** The longest wait between two attempts (delayBeforeRetry's cap). */
function longestDelay(policy: RetryPolicy): number {
  return Math.max(policy.backoff.maxMs, CONCURRENCY_MIN_WAIT_MS);
}

function delayBeforeRetry(policy: RetryPolicy, retry: number, last: KlingError): number {
  const { backoff } = policy;
  // Full jitter: uniform in [0, min(max, base * 2^(retry-1))].
  let delay = Math.random() * Math.min(backoff.maxMs, backoff.baseMs * 2 ** (retry - 1));
  if (last.retryAfterMs !== null) delay = Math.min(backoff.maxMs, Math.max(delay, last.retryAfterMs));
  if (last.code === 'UPSTREAM_CONCURRENCY_LIMIT') delay = Math.max(delay, CONCURRENCY_MIN_WAIT_MS);
  return delay;
}

async function withRetries<T>(
  policy: RetryPolicy,
  attempt: () => Promise<T>,
  beforeRetry?: () => Promise<T | undefined>,
  retryable: (error: KlingError) => boolean = (error) => error.retryable,
): Promise<T> {
  let last: KlingError | undefined;
  for (let n = 1; n <= policy.maxAttempts; n++) {
    if (last) {
      const delay = delayBeforeRetry(policy, n - 1, last);
      await new Promise((resolve) => setTimeout(resolve, delay));
      const settled = await beforeRetry?.();
      if (settled !== undefined) return settled;
    }
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof KlingError) || !retryable(error)) throw error;
      last = error;
    }
  }
  throw last;
}

/**
 * After the last attempt of a create failed: the task an earlier attempt created after all, or
 * the error to report. `lookUp` asks the upstream for the task by our external id.
 */
async function settleFailedCreate(
  error: unknown,
  reachedUpstream: boolean,
  externalId: string,
  lookUp: () => Promise<KlingTask | null>,
): Promise<KlingTask> {
  if (!(error instanceof KlingError)) throw error;
  if (reachedUpstream && error.retryable && !error.ambiguous) {
    // A throttled or failed retry says nothing of an earlier attempt that may have been accepted:
    // the task may be running upstream, so it is reported as unknown, never as not sent.
    throw new KlingError({
      code: error.code,
      message: `${error.message} (after an earlier attempt that may have been accepted)`,
      ambiguous: true,
      httpStatus: error.httpStatus,
      upstreamCode: error.upstreamCode,
      retryAfterMs: error.retryAfterMs,
      cause: error,
    });
  }
  if (reachedUpstream && !error.retryable && !error.ambiguous && !isDuplicateExternalId(error)) {
    // A refusal of a retry says nothing of an earlier attempt that may have been accepted: ask.
    let existing: KlingTask | null;
    try {
      existing = await lookUp();
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
    // Not found now, but an earlier attempt may still be on its way in: unknown, not refused. The
    // reconciler looks again before it sends anything, and a refusal that is real repeats then.
    throw new KlingError({
      code: 'UPSTREAM_UNAVAILABLE',
      message: `a retried create was refused (${error.message}) after an earlier attempt whose fate is unknown`,
      ambiguous: true,
      httpStatus: error.httpStatus,
      upstreamCode: error.upstreamCode,
      cause: error,
    });
  }
  if (!isDuplicateExternalId(error)) throw error;
  const existing = await lookUp().catch(() => null);
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

export function createKlingClient(opts: KlingClientOptions): KlingClient {
  const transport: Transport = {
    apiKey: opts.apiKey,
    timeoutMs: opts.timeoutMs ?? 15_000,
    fetch: opts.fetch ?? fetch,
    onCall: opts.onCall,
  };
  const policy: RetryPolicy = { maxAttempts: opts.maxAttempts ?? 4, backoff: opts.backoff ?? { baseMs: 250, maxMs: 5000 } };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) throw new RangeError('maxAttempts must be an integer >= 1');
  const endpoint = `${opts.baseUrl.replace(/\/+$/, '')}/kling/v1/videos/omni-video`;
  const urlFor = (id: string) => `${endpoint}/${encodeURIComponent(id)}`;

  async function getOnce(id: string, via = transport): Promise<KlingTask | null> {
    try {
      return await send(via, 'get', urlFor(id));
    } catch (error) {
      if (error instanceof KlingError && isNotFound(error)) return null;
      throw error;
    }
  }

  async function getTask(id: { taskId: string } | { externalTaskId: string }, limits: CallLimits = {}): Promise<KlingTask | null> {
    const via = { ...transport, timeoutMs: Math.min(transport.timeoutMs, limits.timeoutMs ?? Infinity) };
    const attempts = { ...policy, maxAttempts: Math.max(1, Math.min(policy.maxAttempts, limits.maxAttempts ?? Infinity)) };
    // Kling resolves the path segment as either id kind.
    return withRetries(attempts, () => getOnce('taskId' in id ? id.taskId : id.externalTaskId, via));
  }

  async function createTask(body: UpstreamCreateBody, options: CreateOptions = {}): Promise<KlingTask> {
    const retryThrottled = options.retryThrottled ?? true;
    const externalId = body.external_task_id;
    // Before resubmitting, ask whether the failed attempt reached the upstream after all. If the
    // lookup itself fails, resubmitting is still safe: the upstream refuses a duplicate external id.
    const alreadyCreated = async () => (await getOnce(externalId).catch(() => null)) ?? undefined;
    let reachedUpstream = false;
    const attempt = async () => {
      try {
        return await send(transport, 'create', endpoint, body);
      } catch (error) {
        if (error instanceof KlingError && error.ambiguous) reachedUpstream = true;
        throw error;
      }
    };
    try {
      return await withRetries(
        policy,
        attempt,
        alreadyCreated,
        (error) => error.retryable && (retryThrottled || reachedUpstream || !isThrottle(error)),
      );
    } catch (error) {
      return settleFailedCreate(error, reachedUpstream, externalId, () => getTask({ externalTaskId: externalId }));
    }
  }

  // Creates and the lookups before each retry, the waits between them, then settleFailedCreate's lookup with its retries.
  const { maxAttempts } = policy;
  const createTimeLimitMs = (3 * maxAttempts - 1) * transport.timeoutMs + 2 * (maxAttempts - 1) * longestDelay(policy);
  return { createTask, getTask, createTimeLimitMs };
}
