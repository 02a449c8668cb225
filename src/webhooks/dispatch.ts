import { and, eq, inArray, sql } from 'drizzle-orm';
import type { PgInsertValue } from 'drizzle-orm/pg-core';
import type { Db, Tx } from '../db/database.ts';
import { queryRows } from '../db/database.ts';
import { settings, taskEvents, webhookDeliveries, webhookEndpoints } from '../db/schema.ts';
import { readChangesAfter } from '../pubsub/change-log.ts';
import type { ChangePosition, LoggedChange } from '../pubsub/change-log.ts';
import { taskFromSnapshot } from '../tasks/snapshot.ts';
import type { TaskRow } from '../tasks/state.ts';
import { eventBody, eventIdOf, eventsOfChange } from './outbound-events.ts';
import type { WebhookEventType } from './outbound-events.ts';

/** The task as the API returns it (global ids, every field), for the body of an event. */
export type TaskSerializer = (task: TaskRow) => Promise<unknown>;

/** Where the webhook dispatcher has read the change log up to, shared by every instance. */
const POSITION_KEY = 'webhook_dispatch_position';

function parsePosition(value: string): ChangePosition {
  const [txid, seq] = value.split('.');
  return { txid: BigInt(txid ?? '0'), seq: BigInt(seq ?? '0') };
}

/** The status each change moved its task into (from its status event), keyed by task and version. */
async function enteredStatuses(tx: Tx, changes: LoggedChange[]): Promise<Map<string, string>> {
  const rows = await tx
    .select({ taskId: taskEvents.taskId, version: taskEvents.version, toStatus: taskEvents.toStatus, fromStatus: taskEvents.fromStatus })
    .from(taskEvents)
    .where(
      and(
        eq(taskEvents.kind, 'status'),
        inArray(taskEvents.taskId, [...new Set(changes.map((change) => change.taskId))]),
        inArray(taskEvents.version, [...new Set(changes.map((change) => change.version))]),
      ),
    );
  const entered = new Map<string, string>();
  for (const row of rows) {
    if (row.toStatus !== null && row.toStatus !== row.fromStatus) entered.set(`${row.taskId}/${row.version}`, row.toStatus);
  }
  return entered;
}

type DeliveryInsert = PgInsertValue<typeof webhookDeliveries>;

/** The deliveries a batch of changes makes: one per (event, enabled endpoint subscribed to its type). */
async function deliveriesOf(
  tx: Tx,
  changes: LoggedChange[],
  serializeTask: TaskSerializer,
  firstDelaySeconds: number,
): Promise<DeliveryInsert[]> {
  const tenantIds = [...new Set(changes.map((change) => change.tenantId))];
  const endpoints = await tx
    .select({
      id: webhookEndpoints.id,
      tenantId: webhookEndpoints.tenantId,
      events: webhookEndpoints.events,
      createdAt: webhookEndpoints.createdAt,
    })
    .from(webhookEndpoints)
    .where(and(inArray(webhookEndpoints.tenantId, tenantIds), eq(webhookEndpoints.enabled, true)));
  if (endpoints.length === 0) return [];
  const entered = await enteredStatuses(tx, changes);
  const rows: DeliveryInsert[] = [];
  for (const change of changes) {
    const task = taskFromSnapshot(change.task, change.position);
    // An endpoint hears of the changes made after it was created.
    const listening = endpoints.filter((endpoint) => endpoint.tenantId === change.tenantId && endpoint.createdAt <= task.updatedAt);
    if (listening.length === 0) continue;
    const types = eventsOfChange(entered.get(`${change.taskId}/${change.version}`) ?? null);
    const wanted = (type: WebhookEventType) => listening.filter((endpoint) => endpoint.events.includes(type));
    if (!types.some((type) => wanted(type).length > 0)) continue;
    const serialised = await serializeTask(task);
    for (const type of types) {
      const body = eventBody(type, task.updatedAt, serialised);
      const eventId = eventIdOf(change.taskId, change.version, type);
      for (const endpoint of wanted(type)) {
        rows.push({
          tenantId: change.tenantId,
          endpointId: endpoint.id,
          eventId,
          eventType: type,
          body,
          nextAttemptAt: sql`now() + make_interval(secs => ${firstDelaySeconds})`,
        });
      }
    }
  }
  return rows;
}

/**
 * Turns the change log into deliveries. The position read up to is a row of `settings`, locked
 * FOR UPDATE SKIP LOCKED for the whole transaction: one instance at a time reads the log (the
 * others skip the tick), and the deliveries of a batch are inserted in the transaction that moves
 * the position past it, so a crash loses no event and a re-read makes no second delivery (unique
 * per endpoint and event id). The log is read with its own reader, which takes only changes whose
 * transaction is older than every one still running, so no change can appear behind the position.
 */
export function createWebhookDispatcher(deps: { db: Db; serializeTask: TaskSerializer; batchSize: number; firstDelaySeconds: number }) {
  const { db } = deps;
  let positionStored = false;
  return async function dispatch(): Promise<{ changes: number; queued: number }> {
    if (!positionStored) {
      await db.insert(settings).values({ key: POSITION_KEY, value: '0.0' }).onConflictDoNothing({ target: settings.key });
      positionStored = true;
    }
    return db.transaction(async (tx) => {
      const [row] = await queryRows<{ value: string }>(
        tx,
        sql`select value from settings where key = ${POSITION_KEY} for update skip locked`,
      );
      if (row === undefined) return { changes: 0, queued: 0 };
      // No endpoint enabled anywhere: nothing to make, so the position moves to the readable head
      // without reading the tasks. One statement, so the endpoints it sees are those committed before
      // any change it skips.
      const [skipped] = await queryRows<{ value: string }>(
        tx,
        sql`update settings set value = head.value
            from (select c.txid::text || '.' || c.seq::text as value from task_changes c
                  where c.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                  order by c.txid desc, c.seq desc limit 1) head
            where settings.key = ${POSITION_KEY} and not exists (select 1 from webhook_endpoints where enabled)
            returning settings.value`,
      );
      if (skipped !== undefined) return { changes: 0, queued: 0 };
      const { changes } = await readChangesAfter(tx, parsePosition(row.value), deps.batchSize);
      const last = changes.at(-1);
      if (last === undefined) return { changes: 0, queued: 0 };
      const rows = await deliveriesOf(tx, changes, deps.serializeTask, deps.firstDelaySeconds);
      const inserted =
        rows.length === 0
          ? []
          : await tx.insert(webhookDeliveries).values(rows).onConflictDoNothing().returning({ id: webhookDeliveries.id });
      await tx
        .update(settings)
        .set({ value: `${last.position.txid}.${last.position.seq}` })
        .where(eq(settings.key, POSITION_KEY));
      return { changes: changes.length, queued: inserted.length };
    });
  };
}
