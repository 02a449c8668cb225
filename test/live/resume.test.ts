import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChangeLog } from '../../src/pubsub/change-log.ts';
import { createLogger } from '../../src/logger.ts';
import { callbackBody, callbackUrlOf, createTask, createTenant, postJson, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TaskView, TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeSse, subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { Collector } from '../support/subscriptions.ts';

const TENANT_WIDE = 'subscription ($after: String) { omniTaskUpdated(after: $after) { id status version changeCursor } }';

type Update = { id: string; status: string; version: number; changeCursor: string };

type Transport = {
  name: string;
  subscribe(gateway: TestGateway, tenant: TestTenant, after: string | null): Promise<{ collector: Collector; close(): Promise<void> }>;
};

const transports: Transport[] = [
  {
    name: 'WebSocket',
    async subscribe(gateway, tenant, after) {
      const client = wsClient(gateway.url, tenant.apiKey);
      const { collector } = await subscribeWs(client, TENANT_WIDE, { after });
      return { collector, close: async () => client.dispose() };
    },
  },
  {
    name: 'SSE',
    async subscribe(gateway, tenant, after) {
      const { collector, close } = await subscribeSse(gateway.url, tenant.apiKey, TENANT_WIDE, { after });
      return { collector, close: async () => close() };
    },
  },
];

const updates = (collector: Collector): Update[] => collector.items.map((item) => item.data?.omniTaskUpdated as Update);

describe.each(transports)('resuming a tenant-wide subscription over $name', (transport) => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  let other: TestTenant;
  beforeAll(async () => {
    // The upstream moves no task on its own: every change is one the test makes.
    gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 } });
    gateway.simulator.settings.callbacks = false;
    tenant = await createTenant(gateway, 'Resumer');
    other = await createTenant(gateway, 'Bystander');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('replays the latest state of each task changed while away, in log order, then goes on live with no gap or repeat', async () => {
    const first = await transport.subscribe(gateway, tenant, null);
    // The other tenant watches all along, and resumes too: each sees only its own tasks.
    const bystander = await transport.subscribe(gateway, other, null);
    const before: TaskView[] = [];
    for (let i = 0; i < 5; i += 1) before.push(await createTask(gateway, tenant, TEXT_TO_VIDEO));
    // Each create is two changes (PENDING, then SUBMITTED once the upstream accepts it).
    await first.collector.untilCount(10);
    const last = updates(first.collector).at(-1)!;
    await first.close();

    // Away: 20 new tasks (two changes each), 3 of the earlier ones move on, another tenant works too.
    const created: TaskView[] = [];
    for (let i = 0; i < 20; i += 1) created.push(await createTask(gateway, tenant, TEXT_TO_VIDEO));
    for (const task of before.slice(0, 3)) {
      expect((await postJson(callbackUrlOf(gateway, task.id), callbackBody(task, 'processing'))).status).toBe(200);
    }
    const theirs = await createTask(gateway, other, TEXT_TO_VIDEO);
    await bystander.collector.until((c) => updates(c).some((update) => update.id === theirs.id), "the other tenant's task");
    const theirCursor = updates(bystander.collector)[0]!.changeCursor;
    await bystander.close();

    const resumed = await transport.subscribe(gateway, tenant, last.changeCursor);
    await resumed.collector.untilCount(23);
    const replayed = updates(resumed.collector);
    expect(replayed.map((update) => [update.id, update.status])).toEqual([
      ...created.map((task) => [task.id, 'SUBMITTED']),
      ...before.slice(0, 3).map((task) => [task.id, 'PROCESSING']),
    ]);
    const cursors = replayed.map((update) => update.changeCursor);
    expect(new Set(cursors).size).toBe(cursors.length);

    // Live from here: one new task, each of its changes once, nothing replayed twice.
    const fresh = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await resumed.collector.until(
      (c) => updates(c).some((update) => update.id === fresh.id && update.status === 'SUBMITTED'),
      'the new task live',
    );
    expect(
      updates(resumed.collector)
        .slice(23)
        .map((update) => [update.id, update.version]),
    ).toEqual([
      [fresh.id, 1],
      [fresh.id, 2],
    ]);
    await resumed.close();

    // The other tenant resumes from before its task's last change: its task, nothing of this tenant's.
    const theirResume = await transport.subscribe(gateway, other, theirCursor);
    const mine = await createTask(gateway, other, TEXT_TO_VIDEO);
    await theirResume.collector.until((c) => updates(c).some((update) => update.id === mine.id && update.version === 2), 'its new task');
    expect(new Set(updates(theirResume.collector).map((update) => update.id))).toEqual(new Set([theirs.id, mine.id]));
    await theirResume.close();
  });

  it('a cursor older than the log keeps is refused with CURSOR_EXPIRED', async () => {
    const probe = await transport.subscribe(gateway, tenant, null);
    await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await probe.collector.untilCount(1);
    const old = updates(probe.collector)[0]!.changeCursor;
    await probe.close();
    // Prune everything, as the retention job does with changes older than CHANGE_LOG_RETENTION_HOURS.
    const log = await createChangeLog(gateway.database, createLogger('silent'));
    try {
      expect(await log.prune(0)).toBeGreaterThan(0);
    } finally {
      await log.close();
    }
    const expired = await transport.subscribe(gateway, tenant, old);
    await expired.collector.untilDone();
    const errors = JSON.stringify(expired.collector.error ?? expired.collector.items);
    expect(errors).toContain('CURSOR_EXPIRED');
    // What the client should do about it.
    expect(errors).toContain('This changeCursor is older than the change log keeps: list the tasks again, then subscribe without it.');
    await expired.close();

    // A cursor from after the prune still resumes: only what was pruned is gone.
    const fresh = await transport.subscribe(gateway, tenant, null);
    await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await fresh.collector.untilCount(1);
    const recent = updates(fresh.collector)[0]!.changeCursor;
    await fresh.close();
    const resumed = await transport.subscribe(gateway, tenant, recent);
    const next = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await resumed.collector.until((c) => updates(c).some((update) => update.id === next.id), 'a task made after resuming');
    expect(resumed.collector.error).toBeNull();
    await resumed.close();
  });
});
