import { decodeGlobalID } from '@pothos/plugin-relay';
import { sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { pruneDeliveries } from '../../src/webhooks/deliver.ts';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { GraphQLResponse, TestGateway } from '../support/gateway.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';
import type { ReceivedWebhook } from '../support/webhook-receiver.ts';

const CREATE_ENDPOINT = `mutation ($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { secret endpoint { id url events description enabled disabledReason createdAt failingSince } }
}`;
const DELIVERIES = `query ($id: ID!, $filter: WebhookDeliveryFilter) {
  webhookDeliveries(endpointId: $id, first: 50, filter: $filter) {
    edges { node { id eventId eventType status nextAttemptAt createdAt attempts { at httpStatus durationMs error } } }
  }
}`;
/** Every OmniTask field, as the webhook body carries them. */
const FULL_TASK = `id status statusMessage version changeCursor prompt modelName mode aspectRatio durationSeconds
  referenceImages { index url type sha256 byteSize } elements { index elementId }
  referenceVideos { index url referType keepOriginalSound }
  videos { id url durationSeconds upstreamUrl archived sizeBytes sha256 }
  externalTaskId upstreamTaskId createdAt updatedAt submittedAt completedAt`;

type Delivery = {
  id: string;
  eventId: string;
  eventType: string;
  status: string;
  nextAttemptAt: string | null;
  attempts: { at: string; httpStatus: number | null; durationMs: number | null; error: string | null }[];
};

let gateway: TestGateway;
let tenant: TestTenant;
/** Everything the gateway logs, at the most verbose level, and every secret it handed out. */
const logLines: string[] = [];
const secretsGiven = new Set<string>();

beforeAll(async () => {
  // A compressed retry schedule: immediately, then 50 ms between attempts, five attempts in all.
  gateway = await startGateway({
    env: { WEBHOOK_RETRY_SCHEDULE: '0,0.05,0.05,0.05,0.05' },
    logger: createLogger('trace', { write: (line: string) => void logLines.push(line) }),
  });
  tenant = await createTenant(gateway, 'Webhooks');
});
afterAll(async () => {
  await gateway?.stop();
});

function data<T>(response: GraphQLResponse<T>, query: string): T {
  return expectData(response, query);
}

async function createEndpoint(url: string, events: string[], apiKey = tenant.apiKey) {
  const result = await gateway.graphql<{ createWebhookEndpoint: { secret: string; endpoint: { id: string; enabled: boolean } } }>(
    CREATE_ENDPOINT,
    { input: { url, events, description: 'test receiver' } },
    apiKey,
  );
  const created = data(result, CREATE_ENDPOINT).createWebhookEndpoint;
  secretsGiven.add(created.secret);
  return created;
}

async function deliveries(endpointId: string, apiKey = tenant.apiKey): Promise<Delivery[]> {
  const result = await gateway.graphql<{ webhookDeliveries: { edges: { node: Delivery }[] } }>(DELIVERIES, { id: endpointId }, apiKey);
  return data(result, DELIVERIES).webhookDeliveries.edges.map((edge) => edge.node);
}

const headersOf = (request: ReceivedWebhook) => ({
  'webhook-id': String(request.headers['webhook-id']),
  'webhook-timestamp': String(request.headers['webhook-timestamp']),
  'webhook-signature': String(request.headers['webhook-signature']),
});

describe('outbound webhooks', () => {
  it('signs every delivery so the standardwebhooks library verifies it; a tampered body or a stale timestamp fails', async () => {
    const receiver = await startWebhookReceiver();
    const all = await createEndpoint(receiver.url, ['TASK_UPDATED', 'TASK_SUCCEEDED']);
    const onlySucceeded = await createEndpoint(`${receiver.url}?only=succeeded`, ['TASK_SUCCEEDED']);
    try {
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const isSucceeded = (request: ReceivedWebhook) => request.json.type === 'task.succeeded' && request.json.data.task.id === task.id;
      await receiver.waitUntil((received) => received.filter(isSucceeded).length === 2);
      // Deliveries of a task come in the order of its versions only per attempt timing; look at them as a set.
      const mine = receiver.received.filter((request) => request.json.data?.task?.id === task.id);
      const verifier = new Webhook(all.secret);
      const otherVerifier = new Webhook(onlySucceeded.secret);
      for (const request of mine) {
        const forAll = !String(request.headers['webhook-signature']).includes(' ') && request.body.length > 0;
        expect(forAll).toBe(true);
        const verified = [verifier, otherVerifier].filter((w) => {
          try {
            w.verify(request.body, headersOf(request));
            return true;
          } catch {
            return false;
          }
        });
        expect(verified).toHaveLength(1);
        const good = verified[0] as Webhook;
        // A changed body, or the same signature replayed with a timestamp outside the 5-minute tolerance, fail.
        expect(() => good.verify(request.body.replace('"version":', '"version":1'), headersOf(request))).toThrow();
        const stale = new Date(Date.now() - 10 * 60_000);
        const staleHeaders = {
          ...headersOf(request),
          'webhook-timestamp': String(Math.floor(stale.getTime() / 1000)),
          'webhook-signature': good.sign(String(request.headers['webhook-id']), stale, request.body),
        };
        expect(() => good.verify(request.body, staleHeaders)).toThrow(/timestamp/i);
      }
      // The subscribed-to-TASK_SUCCEEDED endpoint got only that event, once; the other got every change too.
      const succeededOnly = mine.filter(
        (request) => request.headers['webhook-signature'] !== undefined && request.json.type === 'task.succeeded',
      );
      expect(succeededOnly).toHaveLength(2);
      expect(new Set(succeededOnly.map((request) => request.headers['webhook-id'])).size).toBe(1);
      const updates = mine.filter((request) => request.json.type === 'task.updated');
      const versions = updates.map((request) => request.json.data.task.version as number).sort((a, b) => a - b);
      expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
      expect(new Set(updates.map((request) => request.headers['webhook-id'])).size).toBe(updates.length);
      // The body's task is what the API returns for that version: compare the final one with omniTask.
      const final = mine.find(isSucceeded) as ReceivedWebhook;
      const query = `query ($id: ID!) { omniTask(id: $id) { ${FULL_TASK} } }`;
      const api = data(await gateway.graphql<{ omniTask: Record<string, unknown> }>(query, { id: task.id }, tenant.apiKey), query).omniTask;
      expect(final.json.data.task).toEqual(api);
      expect(final.json.timestamp).toBe(api.updatedAt);
      expect(Object.keys(final.json).sort()).toEqual(['data', 'timestamp', 'type']);
      // The log shows one successful attempt each, for both endpoints.
      await expect.poll(async () => (await deliveries(onlySucceeded.endpoint.id))[0]?.status).toBe('SUCCEEDED');
      const log = await deliveries(onlySucceeded.endpoint.id);
      expect(log).toHaveLength(1);
      expect(log[0]).toMatchObject({
        eventType: 'TASK_SUCCEEDED',
        status: 'SUCCEEDED',
        nextAttemptAt: null,
        eventId: final.headers['webhook-id'],
      });
      expect(log[0]?.attempts).toHaveLength(1);
      expect(log[0]?.attempts[0]).toMatchObject({ httpStatus: 200, error: null });
    } finally {
      await receiver.close();
    }
  });

  it('retries on the schedule: receiver failing the first 3 attempts gets the event on the 4th, and the log shows all 4', async () => {
    const receiver = await startWebhookReceiver((count) => (count <= 3 ? 503 : 204));
    const endpoint = await createEndpoint(receiver.url, ['TASK_SUCCEEDED']);
    try {
      await createTask(gateway, tenant, TEXT_TO_VIDEO);
      await receiver.waitUntil((received) => received.some((request) => request.answered === 204));
      // The answer reaches the receiver before the gateway records it: wait for the record.
      await expect.poll(async () => (await deliveries(endpoint.endpoint.id))[0]?.status).toBe('SUCCEEDED');
      const [delivery, ...others] = await deliveries(endpoint.endpoint.id);
      expect(others).toHaveLength(0);
      expect(delivery).toMatchObject({ status: 'SUCCEEDED', eventType: 'TASK_SUCCEEDED' });
      expect(delivery?.attempts.map((attempt) => attempt.httpStatus)).toEqual([503, 503, 503, 204]);
      // One event: every attempt carried its webhook-id, and exactly one was answered with a 2xx.
      expect(new Set(receiver.received.map((request) => request.headers['webhook-id']))).toEqual(new Set([delivery?.eventId]));
      expect(receiver.received.filter((request) => request.answered >= 200 && request.answered < 300)).toHaveLength(1);
      // The failing period ended with the success.
      const query = 'query ($id: ID!) { node(id: $id) { ... on WebhookEndpoint { failingSince enabled } } }';
      expect(data(await gateway.graphql(query, { id: endpoint.endpoint.id }, tenant.apiKey), query)).toEqual({
        node: { failingSince: null, enabled: true },
      });
    } finally {
      await receiver.close();
    }
  });

  it('gives up after the last attempt of the schedule, and redeliverWebhook sends the same event again', async () => {
    let up = false;
    const receiver = await startWebhookReceiver(() => (up ? 200 : 500));
    const endpoint = await createEndpoint(receiver.url, ['TASK_UPDATED']);
    try {
      const sent = data(
        await gateway.graphql<{ sendTestWebhook: Delivery }>(
          'mutation ($id: ID!) { sendTestWebhook(endpointId: $id) { id eventId status } }',
          { id: endpoint.endpoint.id },
          tenant.apiKey,
        ),
        'sendTestWebhook',
      ).sendTestWebhook;
      expect(sent.status).toBe('PENDING');
      await receiver.waitUntil((received) => received.filter((request) => request.headers['webhook-id'] === sent.eventId).length === 5);
      let delivery: Delivery | undefined;
      // The fifth answer is in the receiver before the gateway records it: wait for the record.
      await expect
        .poll(async () => {
          delivery = (await deliveries(endpoint.endpoint.id)).find((d) => d.id === sent.id);
          return delivery?.status;
        })
        .toBe('FAILED');
      expect(delivery?.attempts.map((attempt) => attempt.httpStatus)).toEqual([500, 500, 500, 500, 500]);
      expect(receiver.received[0]?.json).toMatchObject({ type: 'task.updated', data: { test: true, task: null } });

      up = true;
      const redeliver = 'mutation ($id: ID!) { redeliverWebhook(deliveryId: $id) { id status eventId } }';
      const again = data(await gateway.graphql<{ redeliverWebhook: Delivery }>(redeliver, { id: sent.id }, tenant.apiKey), redeliver);
      expect(again.redeliverWebhook).toMatchObject({ id: sent.id, status: 'PENDING', eventId: sent.eventId });
      await receiver.waitUntil((received) => received.some((request) => request.answered === 200));
      await expect.poll(async () => (await deliveries(endpoint.endpoint.id)).find((d) => d.id === sent.id)?.status).toBe('SUCCEEDED');
      const ok = receiver.received.find((request) => request.answered === 200) as ReceivedWebhook;
      expect(ok.headers['webhook-id']).toBe(sent.eventId);
      expect(() => new Webhook(endpoint.secret).verify(ok.body, headersOf(ok))).not.toThrow();
    } finally {
      await receiver.close();
    }
  });

  it('signs with both secrets during a rotation, so a receiver holding either one verifies', async () => {
    const receiver = await startWebhookReceiver();
    const created = await createEndpoint(receiver.url, ['TASK_UPDATED']);
    try {
      const rotate = 'mutation ($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { id } } }';
      const rotated = data(
        await gateway.graphql<{ rotateWebhookSecret: { secret: string } }>(rotate, { id: created.endpoint.id }, tenant.apiKey),
        rotate,
      ).rotateWebhookSecret;
      expect(rotated.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{32}$/);
      expect(rotated.secret).not.toBe(created.secret);
      secretsGiven.add(rotated.secret);
      const send = 'mutation ($id: ID!) { sendTestWebhook(endpointId: $id) { eventId } }';
      const { eventId } = data(
        await gateway.graphql<{ sendTestWebhook: { eventId: string } }>(send, { id: created.endpoint.id }, tenant.apiKey),
        send,
      ).sendTestWebhook;
      await receiver.waitUntil((received) => received.some((request) => request.headers['webhook-id'] === eventId));
      const request = receiver.received.find((r) => r.headers['webhook-id'] === eventId) as ReceivedWebhook;
      expect(String(request.headers['webhook-signature']).split(' ')).toHaveLength(2);
      for (const secret of [created.secret, rotated.secret])
        expect(() => new Webhook(secret).verify(request.body, headersOf(request))).not.toThrow();
      const stranger = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;
      expect(() => new Webhook(stranger).verify(request.body, headersOf(request))).toThrow();
    } finally {
      await receiver.close();
    }
  });

  it('manages endpoints: update, disable (nothing is sent), enable, list, delete', async () => {
    const receiver = await startWebhookReceiver();
    try {
      const created = await createEndpoint(receiver.url, ['TASK_FAILED']);
      const update = `mutation ($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) { id url events description enabled disabledReason } }`;
      const changed = data(
        await gateway.graphql(
          update,
          { input: { id: created.endpoint.id, events: ['TASK_SUCCEEDED', 'TASK_CANCELLED'], enabled: false, description: null } },
          tenant.apiKey,
        ),
        update,
      );
      expect(changed).toEqual({
        updateWebhookEndpoint: {
          id: created.endpoint.id,
          url: receiver.url,
          events: ['TASK_SUCCEEDED', 'TASK_CANCELLED'],
          description: null,
          enabled: false,
          disabledReason: 'disabled by the tenant',
        },
      });
      const list = 'query { webhookEndpoints(first: 100) { edges { node { id enabled } } } }';
      const listed = data(
        await gateway.graphql<{ webhookEndpoints: { edges: { node: { id: string; enabled: boolean } }[] } }>(list, {}, tenant.apiKey),
        list,
      );
      expect(listed.webhookEndpoints.edges.map((edge) => edge.node)).toContainEqual({ id: created.endpoint.id, enabled: false });
      const enabled = data(await gateway.graphql(update, { input: { id: created.endpoint.id, enabled: true } }, tenant.apiKey), update);
      expect(enabled).toMatchObject({ updateWebhookEndpoint: { enabled: true, disabledReason: null } });
      // Bad input is a typed error, and changes nothing.
      const bad = await gateway.graphql(
        update,
        { input: { id: created.endpoint.id, url: 'ftp://example.com/x', events: [] } },
        tenant.apiKey,
      );
      expect(bad.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      const remove = 'mutation ($id: ID!) { deleteWebhookEndpoint(id: $id) }';
      expect(data(await gateway.graphql(remove, { id: created.endpoint.id }, tenant.apiKey), remove)).toEqual({
        deleteWebhookEndpoint: true,
      });
      expect(data(await gateway.graphql(remove, { id: created.endpoint.id }, tenant.apiKey), remove)).toEqual({
        deleteWebhookEndpoint: false,
      });
      expect(receiver.received).toHaveLength(0);
    } finally {
      await receiver.close();
    }
  });

  it("keeps tenants apart: B's endpoint hears nothing of A's tasks and B lists none of A's endpoints", async () => {
    const other = await createTenant(gateway, 'Other tenant');
    const receiverA = await startWebhookReceiver();
    const receiverB = await startWebhookReceiver();
    try {
      const endpointA = await createEndpoint(receiverA.url, ['TASK_SUCCEEDED']);
      const endpointB = await createEndpoint(receiverB.url, ['TASK_UPDATED', 'TASK_SUCCEEDED'], other.apiKey);
      const taskA = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const taskB = await createTask(gateway, other, TEXT_TO_VIDEO);
      await receiverA.waitUntil((received) => received.some((r) => r.json.data.task.id === taskA.id));
      await receiverB.waitUntil((received) => received.some((r) => r.json.type === 'task.succeeded' && r.json.data.task.id === taskB.id));
      // B's task finished after A's was delivered to A; everything B heard is about B's own task.
      expect(receiverB.received.every((r) => r.json.data.task.id === taskB.id)).toBe(true);
      expect(receiverA.received.every((r) => r.json.data.task.id === taskA.id)).toBe(true);
      const list = 'query { webhookEndpoints(first: 100) { edges { node { id } } } }';
      const ids = (apiKey: string) =>
        gateway
          .graphql<{ webhookEndpoints: { edges: { node: { id: string } }[] } }>(list, {}, apiKey)
          .then((response) => data(response, list).webhookEndpoints.edges.map((edge) => edge.node.id));
      expect(await ids(other.apiKey)).toEqual([endpointB.endpoint.id]);
      expect(await ids(tenant.apiKey)).toContain(endpointA.endpoint.id);
      expect(await ids(tenant.apiKey)).not.toContain(endpointB.endpoint.id);
    } finally {
      await receiverA.close();
      await receiverB.close();
    }
  });

  it('disables an endpoint whose deliveries have failed for 5 days, with a reason, and queues nothing for it until enabled', async () => {
    const failing = await startWebhookReceiver(() => 500);
    const watcher = await startWebhookReceiver();
    try {
      const endpoint = await createEndpoint(failing.url, ['TASK_SUCCEEDED']);
      const control = await createEndpoint(watcher.url, ['TASK_SUCCEEDED']);
      // The endpoint has been failing for just over 5 days (the database's clock decides).
      await gateway.database.db.execute(
        sql`update webhook_endpoints set failing_since = now() - interval '5 days 1 minute' where id = ${decodeGlobalID(endpoint.endpoint.id).id}`,
      );
      const send = 'mutation ($id: ID!) { sendTestWebhook(endpointId: $id) { id } }';
      data(await gateway.graphql(send, { id: endpoint.endpoint.id }, tenant.apiKey), send);
      const query = 'query ($id: ID!) { node(id: $id) { ... on WebhookEndpoint { enabled disabledReason failingSince } } }';
      const state = async () =>
        data(
          await gateway.graphql<{ node: { enabled: boolean; disabledReason: string | null; failingSince: string | null } }>(
            query,
            { id: endpoint.endpoint.id },
            tenant.apiKey,
          ),
          query,
        ).node;
      await expect.poll(async () => (await state()).enabled).toBe(false);
      expect((await state()).disabledReason).toMatch(/^every delivery failed since \d{4}-\d\d-\d\dT[\d:]+Z; last attempt: HTTP 500$/);
      // A task finishing now reaches the control endpoint, and makes no delivery for the disabled one.
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      await watcher.waitUntil((received) => received.some((r) => r.json.data.task.id === task.id));
      expect((await deliveries(endpoint.endpoint.id)).map((d) => d.eventType)).toEqual(['TASK_UPDATED']); // the test event only
      expect(await deliveries(control.endpoint.id)).toHaveLength(1);
      const update =
        'mutation ($id: ID!) { updateWebhookEndpoint(input: { id: $id, enabled: true }) { enabled disabledReason failingSince } }';
      expect(data(await gateway.graphql(update, { id: endpoint.endpoint.id }, tenant.apiKey), update)).toEqual({
        updateWebhookEndpoint: { enabled: true, disabledReason: null, failingSince: null },
      });
    } finally {
      await failing.close();
      await watcher.close();
    }
  });

  it('prunes finished deliveries older than the retention, and keeps pending ones', async () => {
    const db = gateway.database.db;
    // Every delivery old and finished (those of receivers closed by earlier tests included), but one still pending.
    await db.execute(
      sql`update webhook_deliveries set created_at = now() - interval '40 days',
            status = case when status = 'pending' then 'failed' else status end, next_attempt_at = null`,
    );
    await db.execute(sql`update webhook_deliveries set status = 'pending', next_attempt_at = now() + interval '1 day'
                         where id = (select id from webhook_deliveries order by id limit 1)`);
    const [before] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from webhook_deliveries`);
    expect(before?.n).toBeGreaterThan(1);
    expect(await pruneDeliveries(db, 30 * 86_400, 5_000)).toBe((before?.n ?? 0) - 1);
    const left = await queryRows<{ status: string }>(db, sql`select status from webhook_deliveries`);
    expect(left).toEqual([{ status: 'pending' }]);
  });

  it('never writes a secret to a log line (every test above ran with the gateway logging at trace level)', () => {
    expect(secretsGiven.size).toBeGreaterThan(5);
    expect(logLines.length).toBeGreaterThan(10);
    const leaks = logLines.filter((line) => line.includes('whsec_') || [...secretsGiven].some((secret) => line.includes(secret.slice(6))));
    expect(leaks).toEqual([]);
  });
});
