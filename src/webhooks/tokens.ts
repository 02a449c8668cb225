import { createHmac, timingSafeEqual } from 'node:crypto';

/** The unguessable part of a task's callback URL: an HMAC of the task id under WEBHOOK_SECRET. */
export function webhookToken(secret: string, taskId: string): string {
  return createHmac('sha256', secret).update(`kling-callback:${taskId}`).digest('base64url');
}

export function verifyWebhookToken(secret: string, taskId: string, token: string): boolean {
  const expected = Buffer.from(webhookToken(secret, taskId));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
