import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { bearerToken } from '../http/bearer.ts';
import { BodyTooLargeError, readBody } from '../http/body.ts';
import { sendJson } from '../http/respond.ts';
import { createdData, klingError, klingSuccess, queryData } from './bodies.ts';
import { applyFault, takeFault } from './faults.ts';
import type { SimulatorState } from './state.ts';
import type { SimTask } from './task.ts';

export const CREATE_PATH = '/kling/v1/videos/omni-video';

const MAX_BODY_BYTES = 128 * 1024 * 1024;
// Units per output second (reference §5 price table).
const RATES = { std: 0.6, pro: 0.8, stdWithVideo: 0.9, proWithVideo: 1.2 };

const createBodySchema = z.object({
  model_name: z.enum(['kling-video-o1']).default('kling-video-o1'),
  prompt: z
    .string()
    .refine((p) => p.trim().length > 0, 'prompt is required')
    .refine((p) => [...p].length <= 2500, 'prompt must be at most 2500 characters'),
  image_list: z.array(z.object({ image_url: z.string().min(1), type: z.enum(['first_frame', 'end_frame']).optional() })).optional(),
  element_list: z.array(z.object({ element_id: z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]) })).optional(),
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

type CreateBody = z.output<typeof createBodySchema>;

function units(mode: 'std' | 'pro', withVideo: boolean, seconds: number): string {
  const rate = withVideo ? (mode === 'std' ? RATES.stdWithVideo : RATES.proWithVideo) : RATES[mode];
  return String(Math.round(rate * seconds * 1000) / 1000);
}

function invalidParameter(error: z.ZodError): string {
  const first = error.issues[0];
  const where = first && first.path.length > 0 ? `${first.path.join('.')}: ` : '';
  return `invalid parameter: ${where}${first?.message ?? 'invalid body'}`;
}

/** The task that an accepted create starts, still submitted. */
function newTask(init: { id: string; account: string; body: CreateBody; resultBase: string; silent: boolean }): SimTask {
  const { body } = init;
  const now = Date.now();
  const hasBase = body.video_list?.some((v) => v.refer_type === 'base') ?? false;
  const durationSeconds = hasBase ? 5 : Number(body.duration ?? '5');
  const failMarker = /\[\[fail(?::([^\]]*))?\]\]/.exec(body.prompt);
  return {
    id: init.id,
    account: init.account,
    externalTaskId: body.external_task_id ?? null,
    status: 'submitted',
    statusMessage: '',
    createdAt: now,
    updatedAt: now,
    callbackUrl: body.callback_url ?? null,
    durationSeconds,
    aspectRatio: body.aspect_ratio ?? null,
    units: Number(units(body.mode, (body.video_list?.length ?? 0) > 0, durationSeconds)),
    failWith: failMarker ? failMarker[1] || 'The generated video did not pass content review' : null,
    silent: init.silent,
    watermark: body.watermark_info?.enabled ?? false,
    videoId: randomUUID(),
    resultVideos: null,
    resultBase: init.resultBase,
    callbacks: Promise.resolve(),
  };
}

/** The caller's account (its bearer token), or null once a refusal has been sent. */
function authenticate(req: IncomingMessage, res: ServerResponse, apiKey: string | undefined): string | null {
  const token = bearerToken(req.headers.authorization);
  if (!token) sendJson(res, 401, klingError(1001, 'Authorization is empty'));
  else if (apiKey !== undefined && token !== apiKey) sendJson(res, 401, klingError(1000, 'Authentication failed'));
  else return token;
  return null;
}

/** The request's JSON, or null once a refusal has been sent. */
async function readJson(req: IncomingMessage, res: ServerResponse): Promise<{ raw: unknown } | null> {
  try {
    return { raw: JSON.parse((await readBody(req, MAX_BODY_BYTES)).toString('utf8')) };
  } catch (error) {
    if (error instanceof BodyTooLargeError) sendJson(res, 413, klingError(1200, 'request body too large'));
    else sendJson(res, 400, klingError(1200, 'request body is not valid JSON'));
    return null;
  }
}

/**
 * The create and query endpoints (reference §1 and §2a). The bearer token is the account: tasks
 * and external ids of one key are invisible to another.
 */
export function createKlingApi(deps: { state: SimulatorState; apiKey: string | undefined; baseUrlFor: (req: IncomingMessage) => string }) {
  const { state } = deps;

  async function create(req: IncomingMessage, res: ServerResponse): Promise<void> {
    state.stats.createRequests++;
    const account = authenticate(req, res, deps.apiKey);
    if (account === null) return;
    const json = await readJson(req, res);
    if (json === null) return;
    const externalRaw = (json.raw as { external_task_id?: unknown } | null)?.external_task_id;
    let perExternal: { requests: number; accepted: number } | null = null;
    if (typeof externalRaw === 'string') {
      perExternal = state.stats.byExternalTaskId[externalRaw] ?? { requests: 0, accepted: 0 };
      state.stats.byExternalTaskId[externalRaw] = perExternal;
      perExternal.requests++;
    }

    const fault = takeFault(state.faults, 'create');
    if (await applyFault(fault, res, state.wait)) return;
    // The upstream acts on the request, but the answer never arrives.
    const dropAfterAccept = fault?.kind === 'drop_after_accept';
    const refuse = (message: string) => {
      if (dropAfterAccept) res.socket?.destroy();
      else sendJson(res, 400, klingError(1201, message));
    };

    const parsed = createBodySchema.safeParse(json.raw);
    if (!parsed.success) return refuse(invalidParameter(parsed.error));
    const body = parsed.data;
    if (body.external_task_id !== undefined && state.hasExternalId(account, body.external_task_id)) {
      return refuse('external_task_id already exists');
    }

    const limit = state.settings.concurrencyLimit;
    if (limit !== null && state.inFlight(account) >= limit) {
      // Kling counts concurrency per account: beyond it, 1303 and nothing created.
      state.stats.concurrencyRefusals++;
      if (dropAfterAccept) res.socket?.destroy();
      else sendJson(res, 429, klingError(1303, 'parallel task over resource pack limit'));
      return;
    }
    const resultBase = deps.baseUrlFor(req);
    const task = newTask({ id: state.newTaskId(), account, body, resultBase, silent: !state.settings.callbacks });
    state.stats.createsAccepted++;
    if (perExternal) perExternal.accepted++;
    if (body.external_task_id !== undefined) state.stats.acceptedOrder[body.external_task_id] ??= state.stats.createsAccepted;
    state.start(task);
    if (dropAfterAccept) res.socket?.destroy();
    else sendJson(res, 200, klingSuccess(createdData(task)));
  }

  async function get(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    state.stats.getRequests++;
    const account = authenticate(req, res, deps.apiKey);
    if (account === null) return;
    const fault = takeFault(state.faults, 'get');
    if (await applyFault(fault, res, state.wait)) return;
    if (fault?.kind === 'drop_after_accept') {
      res.socket?.destroy();
      return;
    }
    const task = state.find(account, id);
    if (!task) {
      sendJson(res, 404, klingError(1203, 'task not found'));
      return;
    }
    sendJson(res, 200, klingSuccess(queryData(task)));
  }

  return { create, get };
}
