import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createTenant, taskUuid } from '../support/fixtures.ts';
import { serverUrl } from '../support/database.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import { graphqlAt, waitFor } from '../reliability/support.ts';
import { burstThenOne, createTask, freeOldestSlot, input } from './support.ts';

/*
 * Issue 19: one upstream account shared by many tenants. The simulator enforces an account-wide
 * concurrency limit (1303 beyond it) and counts what it holds; the gateway keeps its own budget
 * in the database and dispatches waiting tasks fairly across tenants.
 */

const FAST = { processingMs: 10, finishMs: 40 };
/** Tasks that run until the test finishes them (simulator.finish). */
const HELD = { processingMs: 10, finishMs: 600_000 };

describe('fair upstream queue', () => {
  let gateway: TestGateway | undefined;
  afterEach(async () => {
    await gateway?.stop();
    gateway = undefined;
  });

  it('budget 3 at a simulator limit of 3: one task of B overtakes 45 of A’s 50, never more than 3 in flight, each created once', async () => {
    gateway = await startGateway({ delays: HELD, simulatorConcurrencyLimit: 3, env: { UPSTREAM_MAX_IN_FLIGHT: '3' } });
    const a = await createTenant(gateway, 'A');
    const b = await createTenant(gateway, 'B');
    const outcome = await burstThenOne({ urls: [gateway.url], simulator: gateway.simulator, a, b, limit: 3, db: gateway.database.db });
    // A held every slot when B's task came: it waits, and is next.
    expect(outcome.bQueuePosition).toBe(1);
    expect(gateway.simulator.stats.concurrencyRefusals).toBe(0);
  }, 120_000);

  it('a budget below what the upstream would take: a create with every slot held waits, sends nothing, and goes when a slot frees', async () => {
    // The upstream never moves the first task on by itself (it would answer PROCESSING after 10 ms): the test finishes it.
    const still = { processingMs: 600_000, finishMs: 1_200_000 };
    gateway = await startGateway({ delays: still, simulatorConcurrencyLimit: 10, env: { UPSTREAM_MAX_IN_FLIGHT: '1' } });
    const a = await createTenant(gateway, 'A');
    const first = await createTask(gateway.url, a.apiKey, input('first'));
    expect(first).toMatchObject({ status: 'SUBMITTED', queuePosition: null });
    const second = await createTask(gateway.url, a.apiKey, input('second'));
    expect(second).toMatchObject({ status: 'PENDING', queuePosition: 1 });
    expect(gateway.simulator.stats.createRequests).toBe(1);
    await freeOldestSlot(gateway.database.db, gateway.simulator, 2);
    expect(gateway.simulator.stats.createRequests).toBe(2);
    expect(gateway.simulator.stats.concurrencyRefusals).toBe(0);
  }, 60_000);

  it('a budget above the simulator limit shrinks on 1303 (AIMD): all tasks still succeed, once each, never over the limit', async () => {
    gateway = await startGateway({ delays: FAST, simulatorConcurrencyLimit: 2, env: { UPSTREAM_MAX_IN_FLIGHT: '8' } });
    const tenant = await createTenant(gateway, 'Greedy');
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, 'subscription { omniTaskUpdated { id status } }', {});
      const tasks = await Promise.all(Array.from({ length: 20 }, (_, i) => createTask(gateway!.url, tenant.apiKey, input(`T ${i}`))));
      const finalOf = () =>
        new Map(
          watch.collector.items
            .map((item) => item.data?.omniTaskUpdated as { id: string; status: string })
            .filter((task) => task.status === 'SUCCEEDED' || task.status === 'FAILED')
            .map((task) => [task.id, task.status]),
        );
      await watch.collector.until(() => finalOf().size >= 20, '20 final tasks', 30_000);
      for (const task of tasks) expect(finalOf().get(task.id)).toBe('SUCCEEDED');
      const stats = gateway.simulator.stats;
      expect(stats.concurrencyRefusals).toBeGreaterThan(0);
      expect(stats.maxInFlight).toBeLessThanOrEqual(2);
      for (const task of tasks) expect(stats.byExternalTaskId[taskUuid(task.id)]?.accepted).toBe(1);
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toMatch(/omni_gateway_upstream_throttled_total\{reason="concurrency"\} [1-9]/);
      expect(metrics).toMatch(/omni_gateway_upstream_budget [1-7]\b/);
      expect(metrics).toMatch(/omni_gateway_upstream_queue_wait_seconds_count [1-9]/);
      // Requeued tasks never went through the reconciler's backoff: no create of theirs is a reconciler retry.
      const [row] = await queryRows<{ n: number }>(
        gateway.database.db,
        sql`select count(*)::int as n from task_events where source = 'dispatch' and payload->>'requeued' = 'true'`,
      );
      expect(Number(row?.n)).toBeGreaterThan(0);
    } finally {
      await client.dispose();
    }
  }, 60_000);

  it('within a tenant, priority then age: a HIGH task overtakes LOW ones queued before it', async () => {
    gateway = await startGateway({ delays: { processingMs: 10, finishMs: 60_000 }, env: { UPSTREAM_MAX_IN_FLIGHT: '1' } });
    const tenant = await createTenant(gateway, 'Prioritised');
    const first = await createTask(gateway.url, tenant.apiKey, input('holds the slot'));
    // Sent upstream: SUBMITTED, or PROCESSING when the simulator's callback (10 ms on) came first.
    expect(['SUBMITTED', 'PROCESSING']).toContain(first.status);
    const lows = [];
    for (let i = 0; i < 3; i += 1) lows.push(await createTask(gateway.url, tenant.apiKey, input(`low ${i}`, { priority: 'LOW' })));
    const high = await createTask(gateway.url, tenant.apiKey, input('urgent', { priority: 'HIGH' }));
    expect(lows.map((task) => task.queuePosition)).toEqual([1, 2, 3]);
    expect(high).toMatchObject({ status: 'PENDING', priority: 'HIGH', queuePosition: 1 });
    const simulator = gateway.simulator;
    // Free the slot: end the running task as its timer would.
    const running = await queryRows<{ upstream_task_id: string }>(
      gateway.database.db,
      sql`select upstream_task_id from omni_tasks where id = ${taskUuid(first.id)}`,
    );
    expect(simulator.finish({ task_id: running[0]!.upstream_task_id })).toBe(true);
    const highId = taskUuid(high.id);
    // The simulator's own record of what reached it: a bounded poll, no event tells the test.
    const order = await waitFor('the next create upstream', () => simulator.stats.acceptedOrder[highId]);
    expect(order).toBe(2);
    for (const low of lows) expect(simulator.stats.acceptedOrder[taskUuid(low.id)]).toBeUndefined();
  }, 30_000);
});

const PLACES = `query ($after: String) {
  omniTasks(first: 50, after: $after) { edges { node { id status queuePosition } } pageInfo { hasNextPage endCursor } }
}`;

describe('queue positions', () => {
  let gateway: TestGateway | undefined;
  afterEach(async () => {
    await gateway?.stop();
    gateway = undefined;
  });

  it('are the order dispatch sends the waiting tasks in, across tenants of different weights and priorities', async () => {
    gateway = await startGateway({ delays: HELD, env: { UPSTREAM_MAX_IN_FLIGHT: '2' } });
    const db = gateway.database.db;
    const a = await createTenant(gateway, 'Busy');
    const b = await createTenant(gateway, 'Mixed');
    const c = await createTenant(gateway, 'Heavy', { weight: 2 });
    // A takes both slots, then all three queue; C weighs twice as much, B asks for one HIGH task late.
    // Sent upstream: SUBMITTED, or PROCESSING when the simulator's callback (10 ms on) came first.
    for (const name of ['a0', 'a1'])
      expect(['SUBMITTED', 'PROCESSING']).toContain((await createTask(gateway.url, a.apiKey, input(name))).status);
    const plan: [typeof a, string, string][] = [
      [a, 'a2', 'NORMAL'],
      [b, 'b0', 'LOW'],
      [c, 'c0', 'NORMAL'],
      [a, 'a3', 'NORMAL'],
      [c, 'c1', 'NORMAL'],
      [b, 'b1', 'NORMAL'],
      [c, 'c2', 'LOW'],
      [a, 'a4', 'HIGH'],
      [b, 'b2', 'HIGH'],
      [c, 'c3', 'NORMAL'],
    ];
    const names = new Map<string, string>();
    for (const [tenant, name, priority] of plan) {
      const task = await createTask(gateway.url, tenant.apiKey, input(name, { priority }));
      expect(task.status, name).toBe('PENDING');
      names.set(taskUuid(task.id), name);
    }
    // Each tenant reads its own page: one replay answers the whole page.
    const predicted = new Map<string, number>();
    for (const tenant of [a, b, c]) {
      const page = await graphqlAt(gateway.url, tenant.apiKey, PLACES, {});
      const edges = page.body?.data?.omniTasks?.edges as { node: { id: string; queuePosition: number | null } }[] | undefined;
      expect(edges, page.text).toBeDefined();
      for (const { node } of edges ?? []) {
        const name = names.get(taskUuid(node.id));
        if (name !== undefined) predicted.set(name, node.queuePosition as number);
      }
    }
    expect([...predicted.values()].sort((x, y) => x - y)).toEqual(Array.from({ length: plan.length }, (_, i) => i + 1));

    // Free one slot at a time, the longest-running task first, and watch what the upstream receives.
    const simulator = gateway.simulator;
    for (let sent = 0; sent < plan.length; sent += 1) await freeOldestSlot(db, simulator, sent + 3);
    const actual = new Map([...names].map(([id, name]) => [name, (simulator.stats.acceptedOrder[id] as number) - 2]));
    expect(Object.fromEntries(actual)).toEqual(Object.fromEntries(predicted));
  }, 60_000);

  it('round-robin among tenants holding equally few slots: four busy tenants queue 5 tasks each, then B one: B goes within the first round, not after all of theirs', async () => {
    gateway = await startGateway({ delays: HELD, env: { UPSTREAM_MAX_IN_FLIGHT: '2' } });
    const db = gateway.database.db;
    const busy = [];
    for (let i = 0; i < 4; i += 1) busy.push(await createTenant(gateway, `Busy ${i}`));
    for (const [i, tenant] of busy.entries()) {
      for (let j = 0; j < 5; j += 1) await createTask(gateway.url, tenant.apiKey, input(`busy ${i}.${j}`));
    }
    const b = await createTenant(gateway, 'B');
    const single = await createTask(gateway.url, b.apiKey, input('one task'));
    expect(single.status).toBe('PENDING');
    // Each tenant has been served at most once, B never: B is in the first round of the queue.
    expect(single.queuePosition).toBeLessThanOrEqual(4);
    const simulator = gateway.simulator;
    const singleId = taskUuid(single.id);
    for (let sent = 2; simulator.stats.acceptedOrder[singleId] === undefined; sent += 1) {
      if (sent > 22) throw new Error('B was never sent');
      await freeOldestSlot(db, simulator, sent + 1);
    }
    // 2 sent at once, then B among the next 4 of 19 waiting.
    expect(simulator.stats.acceptedOrder[singleId]).toBe(2 + (single.queuePosition as number));
  }, 60_000);
});

describe.skipIf(serverUrl === null)('fair upstream queue over two instances on one PostgreSQL database', () => {
  let owner: TestGateway | undefined;
  let other: TestGateway | undefined;
  afterEach(async () => {
    await other?.stop();
    await owner?.stop();
    owner = undefined;
    other = undefined;
  });

  it('the budget holds across both: B overtakes 45 of A’s 50, never more than 3 in flight, each created once', async () => {
    owner = await startGateway({ delays: HELD, simulatorConcurrencyLimit: 3, env: { UPSTREAM_MAX_IN_FLIGHT: '3' } });
    other = await startGateway({
      databaseUrl: owner.database.url!,
      simulator: { instance: owner.simulator, url: owner.simulatorUrl },
      env: { UPSTREAM_MAX_IN_FLIGHT: '3' },
    });
    const a = await createTenant(owner, 'A');
    const b = await createTenant(owner, 'B');
    const outcome = await burstThenOne({
      urls: [owner.url, other.url],
      simulator: owner.simulator,
      a,
      b,
      limit: 3,
      db: owner.database.db,
    });
    expect(outcome.bQueuePosition).toBe(1);
    expect(owner.simulator.stats.concurrencyRefusals).toBe(0);
  }, 120_000);
});
