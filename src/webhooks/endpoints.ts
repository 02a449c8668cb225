import { randomUUID } from 'node:crypto';
import { and, count, desc, eq, getTableColumns, inArray, ne, sql } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { keysetPast } from '../db/keyset.ts';
import { tenants, webhookDeliveries, webhookEndpoints } from '../db/schema.ts';
import { InvalidInputError } from '../errors.ts';
import type { HostResolver } from './outbound-address.ts';
import { endpointUrlProblem } from './outbound-address.ts';
import type { WebhookEventType } from './outbound-events.ts';
import { generateEndpointSecret } from './outbound-send.ts';

type EndpointRow = typeof webhookEndpoints.$inferSelect;
/** An endpoint as the API shows it: never its secrets. */
/** Each endpoint receives every event it subscribed to: the cap bounds one tenant's fan-out. */
export const MAX_ENDPOINTS_PER_TENANT = 20;

export type WebhookEndpoint = Omit<EndpointRow, 'secret' | 'previousSecret' | 'previousSecretExpiresAt'>;
export type WebhookDelivery = typeof webhookDeliveries.$inferSelect;
export type DeliveryStatus = WebhookDelivery['status'];

/** How long the old secret keeps signing beside the new one after a rotation. */
const ROTATION_OVERLAP_SECONDS = 24 * 3600;

const {
  secret: _secret,
  previousSecret: _previous,
  previousSecretExpiresAt: _expires,
  ...PUBLIC_COLUMNS
} = getTableColumns(webhookEndpoints);

type Page = { limit: number; after: { createdAt: Date; id: string } | null };

export type EndpointChanges = {
  url?: string | null;
  events?: WebhookEventType[] | null;
  description?: string | null;
  enabled?: boolean | null;
};

/** Endpoints and deliveries of one tenant at a time: every read and write names the tenant. */
/** Inserts an endpoint under the tenant's row lock, so that concurrent creates cannot pass the cap together. */
function insertEndpoint(db: Db, tenantId: string, values: typeof webhookEndpoints.$inferInsert) {
  return db.transaction(async (tx) => {
    await tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).for('no key update');
    const [row] = await tx.select({ count: count() }).from(webhookEndpoints).where(eq(webhookEndpoints.tenantId, tenantId));
    if (Number(row?.count ?? 0) >= MAX_ENDPOINTS_PER_TENANT) {
      throw new InvalidInputError(`A tenant may have at most ${MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first.`, [
        { path: ['input', 'url'], message: `at most ${MAX_ENDPOINTS_PER_TENANT} endpoints` },
      ]);
    }
    const [inserted] = await tx.insert(webhookEndpoints).values(values).returning(PUBLIC_COLUMNS);
    return inserted;
  });
}

export function createWebhookEndpointService(deps: { db: Db; allowPrivateUrls: boolean; resolve: HostResolver; onQueued?: () => void }) {
  const { db } = deps;

  async function checkUrl(url: string): Promise<void> {
    const problem = await endpointUrlProblem(url, deps.allowPrivateUrls, deps.resolve);
    if (problem !== null)
      throw new InvalidInputError(`This URL cannot receive webhooks: ${problem}.`, [{ path: ['input', 'url'], message: problem }]);
  }

  const ownEndpoint = (tenantId: string, id: string) => and(eq(webhookEndpoints.tenantId, tenantId), eq(webhookEndpoints.id, id));

  return {
    async create(tenantId: string, input: { url: string; events: WebhookEventType[]; description: string | null }) {
      await checkUrl(input.url);
      const secret = generateEndpointSecret();
      const endpoint = await insertEndpoint(db, tenantId, {
        tenantId,
        url: input.url,
        events: [...new Set(input.events)],
        description: input.description,
        secret,
      });
      return { endpoint: endpoint as WebhookEndpoint, secret };
    },

    async update(tenantId: string, id: string, changes: EndpointChanges): Promise<WebhookEndpoint | null> {
      if (changes.url != null) await checkUrl(changes.url);
      const enabling = changes.enabled === true ? { disabledReason: null, failingSince: null } : {};
      const disabling = changes.enabled === false ? { disabledReason: 'disabled by the tenant' } : {};
      const [endpoint] = await db
        .update(webhookEndpoints)
        .set({
          ...(changes.url == null ? {} : { url: changes.url }),
          ...(changes.events == null ? {} : { events: [...new Set(changes.events)] }),
          ...(changes.description === undefined ? {} : { description: changes.description }),
          ...(changes.enabled == null ? {} : { enabled: changes.enabled, ...enabling, ...disabling }),
          updatedAt: sql`now()`,
        })
        .where(ownEndpoint(tenantId, id))
        .returning(PUBLIC_COLUMNS);
      return (endpoint as WebhookEndpoint | undefined) ?? null;
    },

    async remove(tenantId: string, id: string): Promise<boolean> {
      const deleted = await db.delete(webhookEndpoints).where(ownEndpoint(tenantId, id)).returning({ id: webhookEndpoints.id });
      return deleted.length > 0;
    },

    /** A new secret; the current one keeps signing beside it for 24 h. Null for an unknown endpoint. */
    async rotate(tenantId: string, id: string): Promise<{ endpoint: WebhookEndpoint; secret: string } | null> {
      const secret = generateEndpointSecret();
      const [endpoint] = await db
        .update(webhookEndpoints)
        .set({
          previousSecret: sql`${webhookEndpoints.secret}`,
          previousSecretExpiresAt: sql`now() + make_interval(secs => ${ROTATION_OVERLAP_SECONDS})`,
          secret,
          updatedAt: sql`now()`,
        })
        .where(ownEndpoint(tenantId, id))
        .returning(PUBLIC_COLUMNS);
      return endpoint === undefined ? null : { endpoint: endpoint as WebhookEndpoint, secret };
    },

    async get(tenantId: string, id: string): Promise<WebhookEndpoint | null> {
      const [endpoint] = await db.select(PUBLIC_COLUMNS).from(webhookEndpoints).where(ownEndpoint(tenantId, id));
      return (endpoint as WebhookEndpoint | undefined) ?? null;
    },

    /** Oldest first. */
    async list(tenantId: string, page: Page): Promise<WebhookEndpoint[]> {
      const after = page.after;
      return (await db
        .select(PUBLIC_COLUMNS)
        .from(webhookEndpoints)
        .where(
          and(
            eq(webhookEndpoints.tenantId, tenantId),
            after === null ? undefined : keysetPast([webhookEndpoints.createdAt, webhookEndpoints.id], [after.createdAt, after.id], 'asc'),
          ),
        )
        .orderBy(webhookEndpoints.createdAt, webhookEndpoints.id)
        .limit(page.limit)) as WebhookEndpoint[];
    },

    ...createDeliveryLog(deps),
  };
}

/** Test events go out even to a disabled endpoint. */
export const TEST_EVENT_PREFIX = 'msg_test_';

/** The delivery log of a tenant's endpoints: reading it, redelivering, and test events. */
function createDeliveryLog(deps: { db: Db; onQueued?: () => void }) {
  const { db } = deps;
  const ownEndpoint = (tenantId: string, id: string) => and(eq(webhookEndpoints.tenantId, tenantId), eq(webhookEndpoints.id, id));
  async function delivery(tenantId: string, id: string): Promise<WebhookDelivery | null> {
    const [row] = await db
      .select()
      .from(webhookDeliveries)
      .where(and(eq(webhookDeliveries.tenantId, tenantId), eq(webhookDeliveries.id, id)));
    return row ?? null;
  }
  return {
    delivery,
    /** An endpoint's deliveries, newest first; null for an endpoint that is not the tenant's. */
    async deliveries(
      tenantId: string,
      endpointId: string,
      page: Page & { status: DeliveryStatus[] | null },
    ): Promise<WebhookDelivery[] | null> {
      const [endpoint] = await db.select({ id: webhookEndpoints.id }).from(webhookEndpoints).where(ownEndpoint(tenantId, endpointId));
      if (endpoint === undefined) return null;
      const after = page.after;
      return db
        .select()
        .from(webhookDeliveries)
        .where(
          and(
            eq(webhookDeliveries.tenantId, tenantId),
            eq(webhookDeliveries.endpointId, endpointId),
            page.status === null ? undefined : inArray(webhookDeliveries.status, page.status),
            after === null
              ? undefined
              : keysetPast([webhookDeliveries.createdAt, webhookDeliveries.id], [after.createdAt, after.id], 'desc'),
          ),
        )
        .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.id))
        .limit(page.limit);
    },

    /**
     * Sends a finished delivery again, with the same `webhook-id` and body, through a new run of
     * the retry schedule. A delivery still pending is returned as it is (it is on its way).
     */
    async redeliver(tenantId: string, id: string): Promise<WebhookDelivery | null> {
      const [row] = await db
        .update(webhookDeliveries)
        .set({ status: 'pending', scheduleAttempts: 0, nextAttemptAt: sql`now()`, updatedAt: sql`now()` })
        .where(and(eq(webhookDeliveries.tenantId, tenantId), eq(webhookDeliveries.id, id), ne(webhookDeliveries.status, 'pending')))
        .returning();
      if (row !== undefined) deps.onQueued?.();
      return row ?? delivery(tenantId, id);
    },

    /**
     * Queues a test event (`task.updated` with `data.test` true and no task) to one endpoint, even a
     * disabled one, so that a receiver can be checked before the endpoint is enabled again.
     */
    async sendTest(tenantId: string, endpointId: string, now: Date): Promise<WebhookDelivery | null> {
      const [endpoint] = await db.select({ id: webhookEndpoints.id }).from(webhookEndpoints).where(ownEndpoint(tenantId, endpointId));
      if (endpoint === undefined) return null;
      const body = JSON.stringify({ type: 'task.updated', timestamp: now.toISOString(), data: { test: true, task: null } });
      const [row] = await db
        .insert(webhookDeliveries)
        .values({
          tenantId,
          endpointId,
          eventId: `${TEST_EVENT_PREFIX}${randomUUID().replaceAll('-', '')}`,
          eventType: 'TASK_UPDATED',
          body,
          nextAttemptAt: sql`now()`,
        })
        .returning();
      deps.onQueued?.();
      return row ?? null;
    },
  };
}

export type WebhookEndpointService = ReturnType<typeof createWebhookEndpointService>;
