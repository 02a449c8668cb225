import type { Client } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import { POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeSse, subscribeWs, wsClient } from '../support/subscriptions.ts';

const AUTH_CACHE_SECONDS = 1;
const TENANT_WIDE = 'subscription { omniTaskUpdated { id status } }';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

/** Resolves with the close code of the client's socket and when (performance.now()) it closed. */
function closedWithin(client: Client): Promise<{ code: number; at: number }> {
  return new Promise((resolve) => {
    client.on('closed', (event) => resolve({ code: (event as { code: number }).code, at: performance.now() }));
  });
}

async function keyOf(gateway: TestGateway, tenantId: string): Promise<{ id: string; apiKey: string }> {
  return expectData(
    await gateway.graphql<{ createApiKey: { id: string; apiKey: string } }>(
      'mutation ($t: ID!) { createApiKey(tenantId: $t) { id apiKey } }',
      {
        t: tenantId,
      },
    ),
  ).createApiKey;
}

async function revoke(gateway: TestGateway, id: string): Promise<number> {
  const started = performance.now();
  expect(expectData(await gateway.graphql('mutation ($id: ID!) { revokeApiKey(id: $id) }', { id }))).toEqual({ revokeApiKey: true });
  return started;
}

describe('revoking a key ends what it opened', () => {
  it('on the instance that revoked it: its WebSocket closes with 4403, its SSE stream ends, another key of the tenant goes on', async () => {
    const gateway = await startGateway({ env: { AUTH_CACHE_SECONDS: String(AUTH_CACHE_SECONDS) } });
    cleanups.push(() => gateway.stop());
    const tenant = await createTenant(gateway, 'Revoked');
    const doomed = await keyOf(gateway, tenant.id);
    const socket = wsClient(gateway.url, doomed.apiKey);
    cleanups.push(async () => socket.dispose());
    const closed = closedWithin(socket);
    const viaWs = await subscribeWs(socket, TENANT_WIDE);
    const viaSse = await subscribeSse(gateway.url, doomed.apiKey, TENANT_WIDE);
    cleanups.push(async () => viaSse.close());
    // fetch's and curl's default Accept (*/*) gets an SSE stream too: it must end the same way.
    const wildcard = await fetch(`${gateway.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: '*/*', authorization: `Bearer ${doomed.apiKey}` },
      body: JSON.stringify({ query: TENANT_WIDE }),
    });
    expect(wildcard.headers.get('content-type')).toContain('text/event-stream');
    const wildcardEnded = wildcard.text().then(
      () => 'ended',
      () => 'ended',
    );
    const survivor = wsClient(gateway.url, tenant.apiKey);
    cleanups.push(async () => survivor.dispose());
    const kept = await subscribeWs(survivor, TENANT_WIDE);

    const started = await revoke(gateway, doomed.id);
    const { code, at } = await closed;
    expect(code).toBe(4403);
    expect(at - started).toBeLessThan((AUTH_CACHE_SECONDS + 1) * 1000);
    await viaWs.collector.untilDone(2_000);
    await viaSse.collector.untilDone((AUTH_CACHE_SECONDS + 1) * 1000);
    expect(await wildcardEnded).toBe('ended');
    // The revoked key opens nothing new; the tenant's other key still hears its tasks.
    expect((await gateway.graphql('{ viewer { tenant { name } } }', {}, doomed.apiKey)).status).toBe(401);
    await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await kept.collector.untilCount(1);
    expect(viaSse.collector.items).toEqual([]);
  });

  it.skipIf(serverUrl === null)(
    'on a second instance: its WebSocket closes with 4403 within AUTH_CACHE_SECONDS + 1 s; another key of the tenant goes on (PostgreSQL)',
    POSTGRES_ONLY,
    async () => {
      const env = { AUTH_CACHE_SECONDS: String(AUTH_CACHE_SECONDS) };
      const first = await startGateway({ env });
      cleanups.push(() => first.stop());
      const second = await startGateway({
        env,
        databaseUrl: first.database.url!,
        simulator: { instance: first.simulator, url: first.simulatorUrl },
      });
      cleanups.push(() => second.stop());
      const tenant = await createTenant(first, 'Elsewhere');
      const doomed = await keyOf(first, tenant.id);
      const socket = wsClient(second.url, doomed.apiKey);
      cleanups.push(async () => socket.dispose());
      const closed = closedWithin(socket);
      const watch = await subscribeWs(socket, TENANT_WIDE);
      const viaSse = await subscribeSse(second.url, doomed.apiKey, TENANT_WIDE);
      cleanups.push(async () => viaSse.close());
      // A live key's socket on the same instance, checked in the same rounds as the revoked one.
      const survivor = wsClient(second.url, tenant.apiKey);
      cleanups.push(async () => survivor.dispose());
      let survivorClosed = false;
      survivor.on('closed', () => {
        survivorClosed = true;
      });
      const kept = await subscribeWs(survivor, TENANT_WIDE);

      const started = await revoke(first, doomed.id);
      const { code, at } = await closed;
      expect(code).toBe(4403);
      expect(at - started).toBeLessThan((AUTH_CACHE_SECONDS + 1) * 1000);
      await watch.collector.untilDone(2_000);
      await viaSse.collector.untilDone((AUTH_CACHE_SECONDS + 1) * 1000);
      // The check that ended the revoked key's connections left the live key's open: it hears a new task.
      const task = await createTask(first, tenant, TEXT_TO_VIDEO);
      await kept.collector.until((c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === task.id), 'the new task');
      expect(survivorClosed).toBe(false);
      expect(kept.collector.done).toBe(false);
    },
  );
});
