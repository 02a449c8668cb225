import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { readBody } from '../http/body.ts';
import { sendJson } from '../http/respond.ts';
import { faultSchema } from './faults.ts';
import type { SimulatorState } from './state.ts';

const MAX_BODY_BYTES = 128 * 1024 * 1024;

const settingsSchema = z.object({ callbacks: z.boolean().optional() });

/**
 * `/__control/{stats,reset,faults,settings}`: steers a simulator that runs in another process.
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
    if (action === 'settings') {
      const parsed = settingsSchema.safeParse(body);
      if (!parsed.success) return sendJson(res, 400, { error: z.prettifyError(parsed.error) });
      if (parsed.data.callbacks !== undefined) state.settings.callbacks = parsed.data.callbacks;
      return sendJson(res, 200, state.settings);
    }
    sendJson(res, 404, { error: 'unknown control route' });
  };
}
