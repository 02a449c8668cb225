import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { callbackBody, callbackUrlOf, createTask, createTenant, postJson, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { Collector } from '../support/subscriptions.ts';

const WATCH = 'subscription ($id: ID) { omniTaskUpdated(id: $id) { id status version } }';

describe.skipIf(serverUrl === null)('several gateway instances on one PostgreSQL database', POSTGRES_ONLY, () => {
  let first: TestGateway;
  let second: TestGateway;
  let tenant: TestTenant;

  beforeAll(async () => {
    // Quiet upstream: every status change comes from callbacks the tests send.
    second = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 }, env: { RECONCILER_INTERVAL_MS: '600000' } });
    second.simulator.settings.callbacks = false;
    // The first instance tells the upstream to call back the second one.
    first = await startGateway({
      databaseUrl: second.database.url!,
      simulator: { instance: second.simulator, url: second.simulatorUrl },
      env: { PUBLIC_BASE_URL: second.url, RECONCILER_INTERVAL_MS: '600000' },
    });
    tenant = await createTenant(first, 'Scaled');
  });
  afterAll(async () => {
    await first?.stop();
    await second?.stop();
  });

  it('a subscriber on instance 1 sees a task finish whose callbacks arrive at instance 2', async () => {
    const task = await createTask(first, tenant, TEXT_TO_VIDEO);
    const callbackUrl = callbackUrlOf(first, task.id);
    expect(callbackUrl.startsWith(`${second.url}/webhooks/kling/`)).toBe(true);
    const client = wsClient(first.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, WATCH, { id: task.id });
      await watch.collector.untilCount(1);
      expect(await postJson(callbackUrl, callbackBody(task, 'processing'))).toMatchObject({ status: 200 });
      const succeeded = callbackBody(task, 'succeed');
      second.simulator.finish(succeeded); // the upstream agrees: a final callback is confirmed by a read
      expect(await postJson(callbackUrl, succeeded)).toMatchObject({ status: 200 });
      await watch.collector.untilDone();
      expect(watch.collector.items.map((item) => item.data?.omniTaskUpdated.status)).toEqual(['SUBMITTED', 'PROCESSING', 'SUCCEEDED']);
    } finally {
      await client.dispose();
    }
  });

  it('a key revoked through one instance is refused at once by an instance that caches no keys', async () => {
    const strict = await startGateway({
      databaseUrl: second.database.url!,
      simulator: { instance: second.simulator, url: second.simulatorUrl },
      env: { AUTH_CACHE_SECONDS: '0', RECONCILER_INTERVAL_MS: '600000' },
    });
    try {
      const created = await first.graphql<{ createApiKey: { id: string; apiKey: string } }>(
        'mutation ($t: ID!) { createApiKey(tenantId: $t) { id apiKey } }',
        { t: tenant.id },
      );
      const key = created.body.data!.createApiKey;
      const viewer = '{ viewer { tenant { name } } }';
      expect((await strict.graphql(viewer, {}, key.apiKey)).status).toBe(200);
      expect((await first.graphql(viewer, {}, key.apiKey)).status).toBe(200); // now cached on the first instance
      await first.graphql('mutation ($id: ID!) { revokeApiKey(id: $id) }', { id: key.id });
      expect((await first.graphql(viewer, {}, key.apiKey)).status).toBe(401);
      expect((await strict.graphql(viewer, {}, key.apiKey)).status).toBe(401);
    } finally {
      await strict.stop();
    }
  });

  it('a due task is polled by exactly one instance', async () => {
    const tasks = await Promise.all(Array.from({ length: 8 }, () => createTask(first, tenant, TEXT_TO_VIDEO)));
    const ids = tasks.map((task) => taskUuid(task.id));
    await queryRows(first.database.db, sql`update omni_tasks set next_check_at = now() where id in ${ids}`);
    const polls = () =>
      [...first.upstreamRequests, ...second.upstreamRequests].filter(
        (request) => request.method === 'GET' && tasks.some((task) => request.path.endsWith(`/${task.upstreamTaskId}`)),
      ).length;
    expect(polls()).toBe(0);
    const handled = await Promise.all([
      first.reconciler().tick(),
      second.reconciler().tick(),
      first.reconciler().tick(),
      second.reconciler().tick(),
    ]);
    expect(handled.reduce((sum, count) => sum + count, 0)).toBe(8);
    expect(polls()).toBe(8);
  });

  it('after the change-feed connection is lost, waiting subscribers still receive the final states, each tenant only its own', async () => {
    const neighbour = await createTenant(first, 'Neighbour');
    const task = await createTask(first, tenant, TEXT_TO_VIDEO);
    const theirs = await createTask(second, neighbour, TEXT_TO_VIDEO);
    const client = wsClient(first.url, tenant.apiKey);
    const neighbourClient = wsClient(second.url, neighbour.apiKey);
    const admin = postgres(first.database.url!, { max: 1, onnotice: () => {} });
    const seen = (collector: Collector, id: string, status?: string) =>
      collector.items.some(
        (item) => item.data?.omniTaskUpdated?.id === id && (status === undefined || item.data.omniTaskUpdated.status === status),
      );
    try {
      const watch = await subscribeWs(client, WATCH, { id: task.id });
      // Tenant-wide watchers of both tenants, one on each instance; a first task of each proves them attached.
      const mine = await subscribeWs(client, WATCH, {});
      const neighbours = await subscribeWs(neighbourClient, WATCH, {});
      await watch.collector.untilCount(1);
      const marker = await createTask(first, tenant, TEXT_TO_VIDEO);
      const neighbourMarker = await createTask(second, neighbour, TEXT_TO_VIDEO);
      await mine.collector.until((c) => seen(c, marker.id), 'the marker task');
      await neighbours.collector.until((c) => seen(c, neighbourMarker.id), "the neighbour's marker task");
      // Both tasks finish, logged as the state machine logs it but with no wake-up sent (as if the
      // NOTIFY were lost in a database restart), then the listening connections are killed: only
      // the instances' own reads of the change log can tell.
      await admin`with finished as (
                    update omni_tasks set status = 'SUCCEEDED', version = version + 1, updated_at = now(), completed_at = now(),
                      change_txid = pg_current_xact_id()::text::bigint, change_seq = nextval('task_changes_seq_seq')
                    where id in (${taskUuid(task.id)}, ${taskUuid(theirs.id)}) returning *)
                  insert into task_changes (txid, seq, tenant_id, task_id, version, task) overriding system value
                  select change_txid, change_seq, tenant_id, id, version, to_jsonb(finished) from finished`;
      const listeners = await admin`select pid from pg_stat_activity
                                    where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`;
      expect(listeners.length).toBeGreaterThanOrEqual(2); // one per instance
      for (const { pid } of listeners) await admin`select pg_terminate_backend(${pid}::int, 5000)`;
      await watch.collector.untilDone(15_000);
      expect(watch.collector.items.map((item) => item.data?.omniTaskUpdated.status)).toEqual(['SUBMITTED', 'SUCCEEDED']);
      await mine.collector.until((c) => seen(c, task.id, 'SUCCEEDED'), 'the tenant-wide watcher to see SUCCEEDED', 15_000);
      await neighbours.collector.until((c) => seen(c, theirs.id, 'SUCCEEDED'), "the neighbour's watcher to see SUCCEEDED", 15_000);
      // A last task of each tenant closes the run: what came before it over that socket has arrived.
      const closing = await createTask(first, tenant, TEXT_TO_VIDEO);
      const neighbourClosing = await createTask(second, neighbour, TEXT_TO_VIDEO);
      await mine.collector.until((c) => seen(c, closing.id), 'the closing task');
      await neighbours.collector.until((c) => seen(c, neighbourClosing.id), "the neighbour's closing task");
      // Each watcher heard its own tenant's tasks (an earlier test's tasks of `tenant` may still be
      // finishing meanwhile), never the other tenant's.
      const ids = (collector: Collector) => [...new Set(collector.items.map((item) => item.data?.omniTaskUpdated?.id as string))];
      const owners = async (globalIds: string[]) =>
        (
          await admin<
            { tenant_id: string }[]
          >`select distinct tenant_id::text from omni_tasks where id in ${admin(globalIds.map(taskUuid))}`
        ).map((row) => row.tenant_id);
      expect(ids(mine.collector)).toEqual(expect.arrayContaining([marker.id, task.id, closing.id]));
      expect(await owners(ids(mine.collector))).toEqual(await owners([task.id]));
      expect(new Set(ids(neighbours.collector))).toEqual(new Set([neighbourMarker.id, theirs.id, neighbourClosing.id]));
    } finally {
      await admin.end();
      await client.dispose();
      await neighbourClient.dispose();
    }
  });
});
