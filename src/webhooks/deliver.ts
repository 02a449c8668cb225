import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { queryRows } from '../db/database.ts';
import { webhookDeliveries, webhookEndpoints } from '../db/schema.ts';
import type { WebhookAttemptRecord } from '../db/schema.ts';
import type { Logger } from '../logger.ts';
import { TEST_EVENT_PREFIX } from './endpoints.ts';
import type { HostResolver } from './outbound-address.ts';
import { postWebhook, signatureHeader } from './outbound-send.ts';
import type { AttemptResult } from './outbound-send.ts';

export type DeliverySettings = {
  /** Seconds before each attempt of a delivery, counted from the previous one (the first from the event, applied by the dispatcher). */
  retryScheduleSeconds: readonly number[];
  timeoutMs: number;
  /** An endpoint failing for this long is disabled. */
  disableAfterSeconds: number;
  allowPrivateUrls: boolean;
  resolve: HostResolver;
};

type LeasedDelivery = {
  id: string;
  tenant_id: string;
  endpoint_id: string;
  event_id: string;
  body: string;
  schedule_attempts: number;
  url: string;
  secret: string;
  previous_secret: string | null;
};

/**
 * Takes the due deliveries (FOR UPDATE SKIP LOCKED) and pushes each one's next attempt past the
 * lease, which outlives the request's timeout: one instance makes each attempt, and a delivery in
 * hand of an instance that dies is taken again once the lease has run out.
 */
async function lease(db: Db, batchSize: number, leaseSeconds: number, held: ReadonlyMap<string, number>): Promise<LeasedDelivery[]> {
  // Of one endpoint, only as many as its attempts already in the air here leave room for (at most
  // PER_ENDPOINT in all): a slow or dead receiver holds a few attempts, never the whole instance's room.
  const heldRows =
    held.size === 0
      ? sql`select null::uuid as endpoint_id, 0 as n where false`
      : sql`select * from (values ${sql.join(
          [...held].map(([id, n]) => sql`(${id}::uuid, ${n}::int)`),
          sql`, `,
        )}) as h(endpoint_id, n)`;
  return queryRows<LeasedDelivery>(
    db,
    sql`with held as (${heldRows}), candidates as (
          select d.id, d.next_attempt_at,
                 row_number() over (partition by d.endpoint_id order by d.next_attempt_at, d.id)
                   + coalesce((select h.n from held h where h.endpoint_id = d.endpoint_id), 0) as place
          from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id
          where d.status = 'pending' and d.next_attempt_at <= now()
            and (e.enabled or starts_with(d.event_id, ${TEST_EVENT_PREFIX}))
        ), due as (
          select d.id from webhook_deliveries d
          where d.id in (select id from candidates where place <= ${PER_ENDPOINT} order by next_attempt_at limit ${batchSize})
            and d.status = 'pending' and d.next_attempt_at <= now()
          for update of d skip locked)
        update webhook_deliveries d
        set next_attempt_at = now() + make_interval(secs => ${leaseSeconds}), schedule_attempts = d.schedule_attempts + 1
        from due, webhook_endpoints e
        where d.id = due.id and e.id = d.endpoint_id
        returning d.id, d.tenant_id, d.endpoint_id, d.event_id, d.body, d.schedule_attempts, e.url, e.secret,
          case when e.previous_secret_expires_at > now() then e.previous_secret end as previous_secret`,
  );
}

/** Attempts to one endpoint in the air at once on an instance. */
const PER_ENDPOINT = 4;

const isSuccess = (result: AttemptResult) => result.httpStatus !== null && result.httpStatus >= 200 && result.httpStatus <= 299;

/**
 * Records an attempt: always appended to the log; the delivery's state moves only if this attempt
 * is still the delivery's latest (a lease that ran out may have been taken over). A failure starts
 * or continues the endpoint's failing period and disables it once that is long enough.
 */
async function record(db: Db, job: LeasedDelivery, at: Date, result: AttemptResult, settings: DeliverySettings): Promise<string> {
  const ok = isSuccess(result);
  const delay = settings.retryScheduleSeconds[job.schedule_attempts];
  const status = ok ? 'succeeded' : delay === undefined ? 'failed' : 'pending';
  const attempt: WebhookAttemptRecord = {
    at: at.toISOString(),
    httpStatus: result.httpStatus,
    durationMs: result.durationMs,
    error: result.error,
  };
  await db.transaction(async (tx) => {
    await tx
      .update(webhookDeliveries)
      .set({ attempts: sql`${webhookDeliveries.attempts} || ${JSON.stringify([attempt])}::jsonb`, updatedAt: sql`now()` })
      .where(eq(webhookDeliveries.id, job.id));
    await tx
      .update(webhookDeliveries)
      .set({ status, nextAttemptAt: status === 'pending' ? sql`now() + make_interval(secs => ${delay ?? 0})` : null })
      .where(
        and(
          eq(webhookDeliveries.id, job.id),
          eq(webhookDeliveries.status, 'pending'),
          eq(webhookDeliveries.scheduleAttempts, job.schedule_attempts),
        ),
      );
    if (ok) {
      await tx
        .update(webhookEndpoints)
        .set({ failingSince: null })
        .where(and(eq(webhookEndpoints.id, job.endpoint_id), sql`${webhookEndpoints.failingSince} is not null`));
      return;
    }
    const overdue = sql`${webhookEndpoints.failingSince} <= now() - make_interval(secs => ${settings.disableAfterSeconds})`;
    await tx
      .update(webhookEndpoints)
      .set({
        failingSince: sql`coalesce(${webhookEndpoints.failingSince}, now())`,
        enabled: sql`case when ${overdue} then false else ${webhookEndpoints.enabled} end`,
        disabledReason: sql`case when ${overdue} and ${webhookEndpoints.enabled}
          then 'every delivery failed since ' || to_char(${webhookEndpoints.failingSince} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '; last attempt: ' || ${result.error ?? `HTTP ${result.httpStatus}`}
          else ${webhookEndpoints.disabledReason} end`,
      })
      .where(eq(webhookEndpoints.id, job.endpoint_id));
  });
  return status;
}

/** Leases due deliveries, sends them (signed), and records each attempt. */
export function createWebhookSender(deps: {
  db: Db;
  logger: Logger;
  settings: DeliverySettings;
  batchSize: number;
  maxInFlight: number;
  /** An attempt finished while the last tick found too little room: lease again. */
  onSettled?: () => void;
  /** A failed attempt's retry is due in this many seconds. */
  onRetry?: (delaySeconds: number) => void;
}) {
  const { db, logger, settings } = deps;
  const leaseSeconds = Math.ceil(settings.timeoutMs / 1000) + 5;

  async function send(job: LeasedDelivery): Promise<void> {
    const at = new Date();
    const secrets = job.previous_secret === null ? [job.secret] : [job.secret, job.previous_secret];
    const result = await postWebhook({
      url: job.url,
      body: job.body,
      headers: {
        'webhook-id': job.event_id,
        'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
        'webhook-signature': signatureHeader(secrets, job.event_id, at, job.body),
      },
      timeoutMs: settings.timeoutMs,
      allowPrivate: settings.allowPrivateUrls,
      resolve: settings.resolve,
    });
    const status = await record(db, job, at, result, settings);
    const delay = settings.retryScheduleSeconds[job.schedule_attempts];
    if (status === 'pending' && delay !== undefined) deps.onRetry?.(delay);
    // Never the URL's credentials nor the secret: ids, the outcome and the attempt number only.
    if (status !== 'succeeded') {
      logger.info(
        {
          deliveryId: job.id,
          endpointId: job.endpoint_id,
          eventId: job.event_id,
          attempt: job.schedule_attempts,
          httpStatus: result.httpStatus,
          err: result.error,
          status,
        },
        'webhook delivery attempt failed',
      );
    }
  }

  // Attempts run beside the loop, up to `maxInFlight` at once: one slow receiver (up to the
  // timeout) holds only its own attempts, not everyone else's.
  const inFlight = new Set<Promise<void>>();
  const perEndpoint = new Map<string, number>();
  let full = false;
  return {
    /** Leases what is due, as far as there is room, and starts the attempts; resolves with how many. */
    async tick(): Promise<number> {
      const room = Math.min(deps.batchSize, deps.maxInFlight - inFlight.size);
      full = room < deps.batchSize;
      if (room <= 0) return 0;
      const jobs = await lease(db, room, leaseSeconds, perEndpoint);
      for (const job of jobs) {
        perEndpoint.set(job.endpoint_id, (perEndpoint.get(job.endpoint_id) ?? 0) + 1);
        const attempt: Promise<void> = send(job)
          .catch((error: unknown) => logger.warn({ err: error, deliveryId: job.id }, 'webhook attempt could not be recorded'))
          .finally(() => {
            inFlight.delete(attempt);
            const left = (perEndpoint.get(job.endpoint_id) ?? 1) - 1;
            if (left > 0) perEndpoint.set(job.endpoint_id, left);
            else perEndpoint.delete(job.endpoint_id);
            // A slot of a busy endpoint freed: what waits for it may be leased now.
            if (full || left === PER_ENDPOINT - 1) deps.onSettled?.();
          });
        inFlight.add(attempt);
      }
      return jobs.length;
    },
    /** Waits for the attempts in hand (shutdown). */
    async drain(): Promise<void> {
      while (inFlight.size > 0) await Promise.all(inFlight);
    },
  };
}

/** Deletes up to `limit` finished deliveries older than the retention; resolves with how many. */
export async function pruneDeliveries(db: Db, retentionSeconds: number, limit: number): Promise<number> {
  const [row] = await queryRows<{ deleted: number }>(
    db,
    sql`with doomed as (
          delete from webhook_deliveries where id in (
            select id from webhook_deliveries
            where status <> 'pending' and created_at < now() - make_interval(secs => ${retentionSeconds})
            limit ${limit})
          returning 1)
        select count(*)::int as deleted from doomed`,
  );
  return Number(row?.deleted ?? 0);
}
