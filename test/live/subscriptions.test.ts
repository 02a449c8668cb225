import { encodeGlobalID } from '@pothos/plugin-relay';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackBody, callbackUrlOf, createTask, createTenant, postJson, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeSse, subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { Collector } from '../support/subscriptions.ts';

const WATCH = `subscription ($id: ID) { omniTaskUpdated(id: $id) { id status version videos { url } } }`;

type Update = { id: string; status: string; version: number };
function updates(collector: Collector): Update[] {
  return collector.items.map((item) => item.data?.omniTaskUpdated as Update);
}
/** Ended with a "not found" GraphQL error and no data (graphql-ws sends it as a result, then completes). */
function notFound(collector: Collector): boolean {
  const errors = [...collector.items.flatMap((item) => item.errors ?? []), ...(Array.isArray(collector.error) ? collector.error : [])];
  return (
    collector.done &&
    collector.items.every((item) => !item.data) &&
    errors.some((error) => error.message === 'No task has this id.' && error.extensions?.code === 'NOT_FOUND')
  );
}

function expectStrictlyIncreasing(versions: number[]): void {
  for (let i = 1; i < versions.length; i += 1) expect(versions[i]).toBeGreaterThan(versions[i - 1]!);
}

describe('omniTaskUpdated with a simulator task', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    // Slow enough that both subscribers are attached before PROCESSING.
    gateway = await startGateway({ delays: { processingMs: 700, finishMs: 1_400 } });
    tenant = await createTenant(gateway, 'Watcher');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('a WebSocket and an SSE subscriber both see PROCESSING then SUCCEEDED, versions increasing, then completion', async () => {
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const ws = await subscribeWs(client, WATCH, { id: task.id });
      const sse = await subscribeSse(gateway.url, tenant.apiKey, WATCH, { id: task.id });
      await Promise.all([ws.collector.untilDone(), sse.collector.untilDone()]);
      for (const collector of [ws.collector, sse.collector]) {
        expect(collector.error).toBeNull();
        const seen = updates(collector);
        const statuses = seen.map((update) => update.status);
        expect(statuses[0]).toBe('SUBMITTED'); // the current state, at once
        expect(statuses.slice(-2)).toEqual(['PROCESSING', 'SUCCEEDED']);
        expectStrictlyIncreasing(seen.map((update) => update.version));
        expect(seen.every((update) => update.id === task.id)).toBe(true);
      }
    } finally {
      await client.dispose();
    }
  });

  it('an unknown id ends at once with a "not found" error, over both transports', async () => {
    const unknown = encodeGlobalID('OmniTask', randomUUID());
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const ws = await subscribeWs(client, WATCH, { id: unknown });
      await ws.collector.untilDone();
      expect(notFound(ws.collector)).toBe(true);
      const sse = await subscribeSse(gateway.url, tenant.apiKey, WATCH, { id: unknown });
      await sse.collector.untilDone();
      expect(notFound(sse.collector)).toBe(true);
    } finally {
      await client.dispose();
    }
  });

  it('refuses a WebSocket without a valid key with 4403 at connection init', async () => {
    for (const key of [null, 'og_wrong']) {
      const client = wsClient(gateway.url, key);
      const closed = new Promise<number>((resolve) => client.on('closed', (event) => resolve((event as { code: number }).code)));
      client.subscribe({ query: WATCH }, { next: () => {}, error: () => {}, complete: () => {} });
      expect(await closed).toBe(4403);
      await client.dispose();
    }
  });
});

describe('polling when callbacks are lost', () => {
  it('a task still reaches SUCCEEDED when the simulator sends no callbacks', async () => {
    const gateway = await startGateway({ delays: { processingMs: 20, finishMs: 40 } });
    try {
      gateway.simulator.settings.callbacks = false;
      const tenant = await createTenant(gateway, 'Poller');
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const client = wsClient(gateway.url, tenant.apiKey);
      try {
        const ws = await subscribeWs(client, WATCH, { id: task.id });
        // The first poll is 5 s after the last news; allow for it and a second one.
        await ws.collector.untilDone(20_000);
        expect(updates(ws.collector).at(-1)?.status).toBe('SUCCEEDED');
        expect(gateway.simulator.stats.callbacksSent).toBe(0);
        expect(gateway.upstreamRequests.some((request) => request.method === 'GET')).toBe(true);
      } finally {
        await client.dispose();
      }
    } finally {
      await gateway.stop();
    }
  });
});

describe('tenant-wide subscriptions', () => {
  it("deliver every change of the tenant's tasks, creation included, and nothing of another tenant", async () => {
    const gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 } });
    gateway.simulator.settings.callbacks = false;
    try {
      const a = await createTenant(gateway, 'Tenant A');
      const b = await createTenant(gateway, 'Tenant B');
      const clientA = wsClient(gateway.url, a.apiKey);
      const clientB = wsClient(gateway.url, b.apiKey);
      try {
        const watchA = await subscribeWs(clientA, WATCH);
        const watchB = await subscribeWs(clientB, WATCH);
        // A WebSocket ack does not mean the subscription is live: a first task of each tenant,
        // seen arriving, proves it is.
        const warmA = await createTask(gateway, a, TEXT_TO_VIDEO);
        const warmB = await createTask(gateway, b, TEXT_TO_VIDEO);
        await watchA.collector.until((c) => updates(c).some((u) => u.id === warmA.id), "A's first task");
        await watchB.collector.until((c) => updates(c).some((u) => u.id === warmB.id), "B's first task");

        const taskA = await createTask(gateway, a, TEXT_TO_VIDEO);
        const succeeded = callbackBody(taskA, 'succeed');
        gateway.simulator.finish(succeeded); // the upstream agrees: a final callback is confirmed by a read
        await postJson(callbackUrlOf(gateway, taskA.id), succeeded);
        await watchA.collector.until((c) => updates(c).some((u) => u.id === taskA.id && u.status === 'SUCCEEDED'), "A's task to succeed");
        expect(
          updates(watchA.collector)
            .filter((u) => u.id === taskA.id)
            .map((u) => u.status),
        ).toEqual(['PENDING', 'SUBMITTED', 'SUCCEEDED']);

        // B also tries to watch A's task by id: the same answer as for an unknown id.
        const foreign = await subscribeWs(clientB, WATCH, { id: taskA.id });
        await foreign.collector.untilDone();
        expect(notFound(foreign.collector)).toBe(true);

        // B's next task comes after all of A's changes: had any leaked, B would have heard them first.
        const taskB = await createTask(gateway, b, TEXT_TO_VIDEO);
        await watchB.collector.until((c) => updates(c).some((u) => u.id === taskB.id && u.status === 'SUBMITTED'), "B's task");
        expect(new Set(updates(watchB.collector).map((u) => u.id))).toEqual(new Set([warmB.id, taskB.id]));
        watchA.unsubscribe();
        watchB.unsubscribe();
      } finally {
        await clientA.dispose();
        await clientB.dispose();
      }
    } finally {
      await gateway.stop();
    }
  });
});
