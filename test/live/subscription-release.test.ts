import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';

const PAIRS = 3_000;

/** A raw graphql-transport-ws socket, acknowledged: the test writes the protocol's messages itself. */
async function rawSocket(gateway: TestGateway, apiKey: string): Promise<WebSocket> {
  const socket = new WebSocket(`${gateway.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${apiKey}` } })));
    socket.on('message', (data) => {
      if (JSON.parse(String(data)).type === 'connection_ack') resolve();
    });
    socket.once('close', (code) => reject(new Error(`closed before ack: ${code}`)));
  });
  return socket;
}

describe('subscriptions release what they hold on every path', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    // The per-tenant cap is what the leak used to exhaust: a small one makes a leak fail fast.
    gateway = await startGateway({ env: { MAX_SUBSCRIPTIONS_PER_TENANT: '50' } });
    tenant = await createTenant(gateway, 'StrictMode');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('a subscription asked for in a form the client does not accept (406) holds nothing', async () => {
    for (const accept of ['application/json', 'image/png', 'application/graphql-response+json']) {
      const response = await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${tenant.apiKey}` },
        body: JSON.stringify({ query: 'subscription { omniTaskUpdated { id } }' }),
      });
      expect(response.status).toBe(406);
      await response.arrayBuffer();
    }
    await expect.poll(() => gateway.app.services.watch.size(), { timeout: 5_000 }).toBe(0);
  });

  it(`${PAIRS} subscribe + complete pairs sent back to back, then the socket closed: nothing is left, and a new subscription hears a new task`, async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const socket = await rawSocket(gateway, tenant.apiKey);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // What React StrictMode's double mount and fast navigation send: subscribe, then complete at once,
    // for the per-task form (which reads the task first) and the tenant-wide form alike.
    for (let i = 0; i < PAIRS; i += 1) {
      const id = String(i);
      const query =
        i % 2 === 0
          ? 'subscription ($id: ID) { omniTaskUpdated(id: $id) { id status } }'
          : 'subscription { omniTaskUpdated { id status } }';
      socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables: { id: task.id } } }));
      socket.send(JSON.stringify({ id, type: 'complete' }));
    }
    // The last few subscribes are still being set up when the socket goes away.
    socket.close(1000);
    await closed;
    await expect.poll(() => gateway.app.services.watch.size(), { timeout: 10_000 }).toBe(0);

    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription { omniTaskUpdated { id status } }');
      const fresh = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      await watch.collector.until((c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === fresh.id), 'the new task');
      expect(gateway.app.services.watch.size()).toBe(1);
    } finally {
      await client.dispose();
    }
  });
});
