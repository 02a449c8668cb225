import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { Collector } from '../support/subscriptions.ts';

const TENANT_WIDE = 'subscription { omniTaskUpdated { id version } }';
/** Each create is two changes: PENDING (version 1) and SUBMITTED (version 2). */
const CREATES = 1_000;
const CHANGES = 2 * CREATES;

const seen = (collector: Collector) =>
  collector.items.map((item) => {
    const task = item.data?.omniTaskUpdated as { id: string; version: number };
    return `${task.id}@${task.version}`;
  });

describe.skipIf(serverUrl === null)('the change log across two instances (PostgreSQL)', POSTGRES_ONLY, () => {
  let first: TestGateway;
  let second: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    const env = { RATE_LIMIT_REQUESTS_PER_SECOND: '0', RATE_LIMIT_CREATES_PER_MINUTE: '0', RECONCILER_INTERVAL_MS: '600000' };
    first = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 }, env });
    first.simulator.settings.callbacks = false;
    second = await startGateway({
      databaseUrl: first.database.url!,
      simulator: { instance: first.simulator, url: first.simulatorUrl },
      env,
    });
    tenant = await createTenant(first, 'Ordered');
  });
  afterAll(async () => {
    await second?.stop();
    await first?.stop();
  });

  it(`${CHANGES} changes made through both are seen by subscribers on both, every one, in the same order, though wake-ups are cut for 5 s`, async () => {
    const clients = [wsClient(first.url, tenant.apiKey), wsClient(second.url, tenant.apiKey)];
    const admin = postgres(first.database.url!, { max: 1, onnotice: () => {} });
    try {
      const watchers = await Promise.all(clients.map((client) => subscribeWs(client, TENANT_WIDE)));
      // For the first 5 s no NOTIFY reaches anyone: the listening connections are cut again and
      // again, so each instance learns of the other's changes only by reading the log itself.
      const cutUntil = performance.now() + 5_000;
      const cutting = (async () => {
        let cuts = 0;
        while (performance.now() < cutUntil) {
          const [row] = await admin`select count(pg_terminate_backend(pid))::int as cut from pg_stat_activity
                                    where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`;
          cuts += Number(row?.cut ?? 0);
          await new Promise((resolve) => setImmediate(resolve));
        }
        return cuts;
      })();
      const gateways = [first, second];
      for (let batch = 0; batch < CREATES / 20; batch += 1) {
        await Promise.all(Array.from({ length: 20 }, (_, i) => createTask(gateways[(batch + i) % 2]!, tenant, TEXT_TO_VIDEO)));
      }
      expect(await cutting).toBeGreaterThan(0);
      await Promise.all(watchers.map((watch) => watch.collector.untilCount(CHANGES, 60_000)));
      const [onFirst, onSecond] = watchers.map((watch) => seen(watch.collector));
      // Named first, so that a failure says which: a change delivered twice, or one not expected at all.
      expect(onFirst?.filter((change, i) => onFirst.indexOf(change) !== i)).toEqual([]);
      expect(onFirst?.filter((change) => !/@[12]$/.test(change))).toEqual([]);
      expect(onFirst).toHaveLength(CHANGES);
      expect(new Set(onFirst).size).toBe(CHANGES);
      expect(onSecond).toEqual(onFirst);
    } finally {
      await admin.end();
      await Promise.all(clients.map((client) => client.dispose()));
    }
  }, 120_000);
});
