import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { serverUrl } from '../support/database.ts';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';

describe.skipIf(serverUrl === null)('outbound webhooks with two gateway instances on one PostgreSQL database', () => {
  let first: TestGateway;
  let second: TestGateway;

  beforeAll(async () => {
    first = await startGateway({ env: { RECONCILER_INTERVAL_MS: '20' } });
    second = await startGateway({
      databaseUrl: first.database.url!,
      simulator: { instance: first.simulator, url: first.simulatorUrl },
      env: { RECONCILER_INTERVAL_MS: '20' },
    });
  });
  afterAll(async () => {
    await second?.stop();
    await first?.stop();
  });

  it('turns each change into one delivery per endpoint and makes each attempt once, whichever instance reads and sends', async () => {
    const receiver = await startWebhookReceiver();
    try {
      const tenant = await createTenant(first, 'Two instances');
      const create =
        'mutation ($url: String!) { createWebhookEndpoint(input: { url: $url, events: [TASK_UPDATED, TASK_SUCCEEDED] }) { endpoint { id } } }';
      expectData(await first.graphql(create, { url: receiver.url }, tenant.apiKey), create);
      const tasks = await Promise.all(Array.from({ length: 6 }, (_, i) => createTask(i % 2 === 0 ? first : second, tenant, TEXT_TO_VIDEO)));
      const ids = new Set(tasks.map((task) => task.id));
      await receiver.waitUntil(
        (received) => received.filter((r) => r.json.type === 'task.succeeded' && ids.has(r.json.data.task.id)).length === tasks.length,
        15_000,
      );
      // One task.updated per logged change, and one task.succeeded per task.
      const [events] = await queryRows<{ count: number }>(
        first.database.db,
        sql`select (count(*) + count(distinct task_id) filter (where task->>'status' = 'SUCCEEDED'))::int as count
            from task_changes c join tenants t on t.id = c.tenant_id where t.name = 'Two instances'`,
      );
      await expect.poll(() => receiver.received.length, { timeout: 10_000 }).toBe(events?.count);
      // Every event exactly once at the receiver, and one attempt each in the log.
      const seen = receiver.received.map((r) => String(r.headers['webhook-id']));
      expect(new Set(seen).size).toBe(seen.length);
      const rows = await queryRows<{ attempts: number; status: string }>(
        first.database.db,
        sql`select jsonb_array_length(attempts)::int as attempts, status from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id where e.url = ${receiver.url}`,
      );
      expect(rows).toHaveLength(seen.length);
      await expect
        .poll(
          async () =>
            (
              await queryRows<{ n: number }>(
                first.database.db,
                sql`select count(*)::int as n from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id where e.url = ${receiver.url} and status = 'succeeded' and jsonb_array_length(attempts) = 1`,
              )
            )[0]?.n,
        )
        .toBe(seen.length);
    } finally {
      await receiver.close();
    }
  });
});
