import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { sendJson } from '../http/respond.ts';
import { klingError } from './bodies.ts';

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

export const faultSchema = z.object({
  op: z.enum(['create', 'get', 'result']),
  kind: z.enum(FAULT_KINDS),
  ms: z.number().int().min(0).max(600_000).optional(),
  count: z.number().int().min(1).max(1_000_000).optional(),
});

/** A one-shot fault applied to the next `count` (default 1) calls of `op`. */
export type SimulatorFault = z.infer<typeof faultSchema>;

const FAULT_RESPONSES: Partial<Record<SimulatorFault['kind'], [number, number, string]>> = {
  http500: [500, 5000, 'Internal server error'],
  http429_1302: [429, 1302, 'API request rate limit exceeded, please try again later'],
  http429_1303: [429, 1303, 'parallel task over resource pack limit'],
  http400_1301: [400, 1301, 'Failure to pass the risk control system, please modify the input'],
  http401: [401, 1000, 'Authentication failed'],
};

/** Takes the first queued fault for `op` out of the queue, or one of its remaining `count`. */
export function takeFault(queue: SimulatorFault[], op: SimulatorFault['op']): SimulatorFault | null {
  const i = queue.findIndex((f) => f.op === op);
  const fault = queue[i];
  if (!fault) return null;
  const remaining = (fault.count ?? 1) - 1;
  if (remaining > 0) queue[i] = { ...fault, count: remaining };
  else queue.splice(i, 1);
  return fault;
}

/** Applies a fault; returns true when the request has been fully dealt with. */
export async function applyFault(fault: SimulatorFault | null, res: ServerResponse, wait: (ms: number) => Promise<void>): Promise<boolean> {
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
