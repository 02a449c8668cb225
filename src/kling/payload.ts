import { z } from 'zod';

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
export function readKlingTask(root: unknown): KlingTask {
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
/** Deeper than any Kling body: what is kept of a callback is walked recursively, so depth is bounded first. */
const MAX_CALLBACK_DEPTH = 32;

/** Whether `value` nests objects or arrays deeper than `limit` (walked without recursion). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [node, depth] = item;
    if (node === null || typeof node !== 'object') continue;
    if (depth >= limit) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/** No id of ours or Kling's contains a NUL character, which PostgreSQL cannot take in a text value either. */
const hasNul = (text: string | null) => text?.includes('\u0000') ?? false;

export function parseKlingCallback(body: unknown): KlingTask {
  if (nestedDeeperThan(body, MAX_CALLBACK_DEPTH)) throw new KlingPayloadError(`nested deeper than ${MAX_CALLBACK_DEPTH} levels`);
  const task = readKlingTask(body);
  if (hasNul(task.taskId) || hasNul(task.externalTaskId)) throw new KlingPayloadError('an id contains a NUL character');
  return task;
}
