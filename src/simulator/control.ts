import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { readBody } from '../http/body.ts';
import { sendJson } from '../http/respond.ts';
import { faultSchema } from './faults.ts';
import type { FinishOutcome, SimulatorState } from './state.ts';

const MAX_BODY_BYTES = 128 * 1024 * 1024;

const settingsSchema = z.object({
  callbacks: z.boolean().optional(),
  concurrencyLimit: z.number().int().min(1).max(1_000_000).nullable().optional(),
});

/**
 * How to end a task now, in the words of a Kling callback (reference §3): a test that posts a
 * hand-made callback makes the upstream's record say the same, so that a gateway confirming the
 * callback by a query reads what the callback claimed.
 */
const finishSchema = z.object({
  task_id: z.string().min(1),
  task_status: z.enum(['succeed', 'failed']).optional(),
  task_status_msg: z.string().optional(),
  task_result: z
    .object({
      videos: z
        .array(z.object({ id: z.string(), url: z.string(), duration: z.union([z.string(), z.number()]).transform(String) }))
        .optional(),
    })
    .optional(),
  final_unit_deduction: z.union([z.string(), z.number()]).transform(Number).optional(),
});

function toFinish(parsed: z.output<typeof finishSchema>): { taskId: string; outcome: FinishOutcome } {
  const outcome: FinishOutcome = {};
  if (parsed.task_status !== undefined) outcome.status = parsed.task_status;
  if (parsed.task_status_msg) outcome.statusMessage = parsed.task_status_msg;
  if (parsed.task_result?.videos !== undefined) outcome.videos = parsed.task_result.videos;
  if (parsed.final_unit_deduction !== undefined && Number.isFinite(parsed.final_unit_deduction)) {
    outcome.units = parsed.final_unit_deduction;
  }
  return { taskId: parsed.task_id, outcome };
}

/** Reads a finish request; throws a ZodError for a body that is not one. */
export function parseFinish(body: unknown): { taskId: string; outcome: FinishOutcome } {
  return toFinish(finishSchema.parse(body));
}

/**
 * `/__control/{stats,reset,faults,settings,finish}`: steers a simulator that runs in another process.
 * These routes are unauthenticated, so the simulator belongs on loopback.
 */
export function createControlHandler(state: SimulatorState) {
  return async function control(req: IncomingMessage, res: ServerResponse, action: string): Promise<void> {
    if (req.method === 'GET' && action === 'stats') return sendJson(res, 200, state.stats);
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method not allowed' });
    if (action === 'reset') {
      state.reset();
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
      state.faults.push(...(Array.isArray(parsed.data) ? parsed.data : [parsed.data]));
      return sendJson(res, 200, { queued: state.faults.length });
    }
    if (action === 'finish') {
      const parsed = finishSchema.safeParse(body);
      if (!parsed.success) return sendJson(res, 400, { error: z.prettifyError(parsed.error) });
      const { taskId, outcome } = toFinish(parsed.data);
      return sendJson(res, 200, { finished: state.finish(taskId, outcome) });
    }
    if (action === 'settings') {
      const parsed = settingsSchema.safeParse(body);
      if (!parsed.success) return sendJson(res, 400, { error: z.prettifyError(parsed.error) });
      if (parsed.data.callbacks !== undefined) state.settings.callbacks = parsed.data.callbacks;
      if (parsed.data.concurrencyLimit !== undefined) state.settings.concurrencyLimit = parsed.data.concurrencyLimit;
      return sendJson(res, 200, state.settings);
    }
    sendJson(res, 404, { error: 'unknown control route' });
  };
}
