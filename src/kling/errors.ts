import { z } from 'zod';

type KlingErrorCode =
  | 'UPSTREAM_AUTH'
  | 'UPSTREAM_RATE_LIMITED'
  | 'UPSTREAM_CONCURRENCY_LIMIT'
  | 'UPSTREAM_CONTENT_REJECTED'
  | 'UPSTREAM_INVALID_REQUEST'
  | 'UPSTREAM_UNAVAILABLE';

/** Which call an error came from: a create that may have reached the upstream is ambiguous. */
export type KlingOp = 'create' | 'get';

const RETRYABLE: ReadonlySet<KlingErrorCode> = new Set(['UPSTREAM_RATE_LIMITED', 'UPSTREAM_CONCURRENCY_LIMIT', 'UPSTREAM_UNAVAILABLE']);

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

function retryAfterMs(header: string | null): number | null {
  if (!header) return null;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/** Returns null for a success envelope, else the error it carries. */
export function errorOf(op: KlingOp, status: number, json: unknown, headers: Headers): KlingError | null {
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

/** An answer whose body is not JSON: an HTML error page of a proxy, or a truncated body. */
export function notJsonError(op: KlingOp, response: Response): KlingError {
  const { status } = response;
  return new KlingError({
    code: codeForHttpStatus(status) === 'UPSTREAM_AUTH' ? 'UPSTREAM_AUTH' : 'UPSTREAM_UNAVAILABLE',
    message: `upstream answered HTTP ${status} with a body that is not JSON`,
    ambiguous: op === 'create' && (status >= 500 || status < 300),
    httpStatus: status,
    retryAfterMs: retryAfterMs(response.headers.get('retry-after')),
  });
}

/** A success envelope that holds no task we can read. */
export function unreadableAnswerError(op: KlingOp, status: number, error: unknown): KlingError {
  return new KlingError({
    code: 'UPSTREAM_UNAVAILABLE',
    message: `upstream answer not understood: ${error instanceof Error ? error.message : String(error)}`,
    // A create may well have succeeded even though we cannot read the answer.
    ambiguous: op === 'create',
    httpStatus: status,
    cause: error,
  });
}

// Errors that prove the request never left this host; everything else may have reached the upstream.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

export function networkError(op: KlingOp, error: unknown, timeoutMs: number): KlingError {
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

export function isNotFound(error: KlingError): boolean {
  return (
    error.httpStatus === 404 ||
    error.upstreamCode === 1203 ||
    (error.code === 'UPSTREAM_INVALID_REQUEST' && /not\s*found|does\s*not\s*exist|不存在/i.test(error.message))
  );
}

export function isDuplicateExternalId(error: KlingError): boolean {
  return (
    error.code === 'UPSTREAM_INVALID_REQUEST' &&
    /external[\s_-]*task[\s_-]*id/i.test(error.message) &&
    /duplicat|already\s*exist|exists|重复|已存在/i.test(error.message)
  );
}
