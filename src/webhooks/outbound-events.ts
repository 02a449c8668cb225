/** The event types an endpoint subscribes to, as GraphQL names them, and the payload `type` of each. */
export const WEBHOOK_EVENT_TYPES = ['TASK_UPDATED', 'TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const PAYLOAD_TYPES: Record<WebhookEventType, string> = {
  TASK_UPDATED: 'task.updated',
  TASK_SUCCEEDED: 'task.succeeded',
  TASK_FAILED: 'task.failed',
  TASK_CANCELLED: 'task.cancelled',
};

/** The final statuses whose arrival is an event of its own. CANCELLED is mapped ahead of the status itself. */
const INTO_STATUS: Record<string, WebhookEventType> = {
  SUCCEEDED: 'TASK_SUCCEEDED',
  FAILED: 'TASK_FAILED',
  CANCELLED: 'TASK_CANCELLED',
};

/**
 * The events one change of a task makes: always TASK_UPDATED, and, when the change moved the task
 * into SUCCEEDED, FAILED or CANCELLED (`enteredStatus`), that status's own event. Each is a
 * separate event with its own id; an endpoint gets only the types it subscribed to.
 */
export function eventsOfChange(enteredStatus: string | null): WebhookEventType[] {
  const into = enteredStatus === null ? undefined : INTO_STATUS[enteredStatus];
  return into === undefined ? ['TASK_UPDATED'] : ['TASK_UPDATED', into];
}

/**
 * The `webhook-id` of an event, the same for every endpoint, attempt and redelivery: the task,
 * the version the change gave it, and the event type. A change turned into deliveries twice makes
 * the same ids, which the (endpoint, event id) uniqueness then keeps to one delivery each.
 */
export function eventIdOf(taskId: string, version: number, type: WebhookEventType): string {
  return `msg_${taskId.replaceAll('-', '')}_v${version}_${PAYLOAD_TYPES[type].slice('task.'.length)}`;
}

/** The body of an event: `{ type, timestamp, data: { task } }`, serialised once and signed as is. */
export function eventBody(type: WebhookEventType, timestamp: Date, task: unknown): string {
  return JSON.stringify({ type: PAYLOAD_TYPES[type], timestamp: timestamp.toISOString(), data: { task } });
}
