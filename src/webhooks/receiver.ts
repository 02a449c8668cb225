import type { IncomingMessage, ServerResponse } from 'node:http';
import { KlingPayloadError, parseKlingCallback } from '../kling/payload.ts';
import type { KlingTask } from '../kling/payload.ts';
import type { Logger } from '../logger.ts';
import { BodyTooLargeError, readBody } from '../http/body.ts';
import { sendJson } from '../http/respond.ts';
import { transitionFromUpstream } from '../tasks/state.ts';
import type { AdvanceOutcome } from '../tasks/state.ts';
import type { TaskService } from '../tasks/tasks.ts';
import { verifyWebhookToken } from './tokens.ts';

const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;

const ROUTE = /^\/webhooks\/kling\/([0-9a-f-]{36})\/([A-Za-z0-9_-]+)$/i;

export type WebhookOutcome = 'applied' | 'unchanged' | 'unauthorized' | 'bad_request' | 'too_large' | 'unavailable';

/** A final status: the task is read, the claims checked, then the upstream asked before anything is recorded. */
async function confirmFinal(tasks: TaskService, taskId: string, payload: KlingTask): Promise<AdvanceOutcome> {
  const task = await tasks.find(taskId);
  if (task === null) return 'unknown';
  const contradicts =
    (task.upstreamTaskId !== null && payload.taskId !== task.upstreamTaskId) ||
    (payload.externalTaskId !== null && payload.externalTaskId !== task.id);
  if (contradicts) return 'contradicts';
  return (await tasks.confirmFinal(task, payload)).changed ? 'changed' : 'unchanged';
}

/** True when `path` is a webhook route (so the caller can hand the request over). */
export function isWebhookPath(path: string): boolean {
  return path.startsWith('/webhooks/kling/');
}

/**
 * POST /webhooks/kling/{taskId}/{token}: the upstream's status callback. A wrong token and an
 * unknown task are the same 401 (existence is never revealed); nothing is read from the body
 * before the token is checked. Whoever learns a callback URL can post to it, so a callback moves
 * a task on (submitted, processing) but never finishes it: a final status is confirmed by one
 * upstream read, and what that read says is recorded.
 */
export function createWebhookReceiver(deps: {
  secret: string;
  tasks: TaskService;
  logger: Logger;
  onOutcome?: (outcome: WebhookOutcome) => void;
}) {
  const { secret, tasks, logger } = deps;
  const answer = (res: ServerResponse, outcome: WebhookOutcome, status: number, body: unknown) => {
    deps.onOutcome?.(outcome);
    // Connection: close on refusals, so an oversize or unread body is not left on a kept-alive socket.
    sendJson(res, status, body, status >= 400 ? { connection: 'close' } : {});
  };

  return async function receive(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' }, { allow: 'POST' });
    const match = ROUTE.exec(path);
    const taskId = match?.[1]?.toLowerCase();
    const token = match?.[2];
    if (taskId === undefined || token === undefined || !verifyWebhookToken(secret, taskId, token)) {
      return answer(res, 'unauthorized', 401, { error: 'unknown task or bad token' });
    }
    let raw: Buffer;
    try {
      raw = await readBody(req, MAX_WEBHOOK_BODY_BYTES);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        return answer(res, 'too_large', 413, { error: `body over ${MAX_WEBHOOK_BODY_BYTES} bytes` });
      }
      throw error;
    }
    let payload: KlingTask;
    try {
      payload = parseKlingCallback(JSON.parse(raw.toString('utf8')));
    } catch (error) {
      if (error instanceof SyntaxError || error instanceof KlingPayloadError) {
        return answer(res, 'bad_request', 400, { error: `not a Kling callback: ${error.message}` });
      }
      throw error;
    }
    try {
      const claims = { upstreamTaskId: payload.taskId, externalTaskId: payload.externalTaskId };
      // A final status is only a hint: the upstream's own answer decides it (and the videos and seconds).
      const final = payload.status === 'succeed' || payload.status === 'failed';
      const outcome = final
        ? await confirmFinal(tasks, taskId, payload)
        : // Never the upstream id from a callback: whoever learnt the URL could pin the task to a
          // made-up id before the create's answer arrives. The create's answer, or a lookup by our
          // own id, is where the upstream id comes from.
          await tasks.advance(taskId, { ...transitionFromUpstream(payload, 'webhook'), upstreamTaskId: null }, claims);
      if (outcome === 'unknown') return answer(res, 'unauthorized', 401, { error: 'unknown task or bad token' });
      if (outcome === 'contradicts') {
        logger.warn({ taskId, upstreamTaskId: payload.taskId }, 'webhook names another task; ignored');
        return answer(res, 'bad_request', 400, { error: 'the body describes another task' });
      }
      const changed = outcome === 'changed';
      return answer(res, changed ? 'applied' : 'unchanged', 200, { ok: true, changed });
    } catch (error) {
      // The upstream retries callbacks that fail; a 503 asks it to, without revealing internals.
      logger.error({ err: error, taskId }, 'webhook could not be applied');
      return answer(res, 'unavailable', 503, { error: 'temporarily unavailable' });
    }
  };
}
