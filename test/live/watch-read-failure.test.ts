import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { createTaskStateMachine } from '../../src/tasks/state.ts';
import { createTestDatabase, POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';
import { createTask, createTenant, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';

/*
 * A read of the change log that fails after the last change there will be: the change is logged
 * with no wake-up sent, the gateway's own read of the log fails, and nothing else changes. The
 * gateway must read again on its own and deliver the final state rather than wait for a signal
 * that will not come (seen in CI after a database restart). To make the read fail for real, the
 * gateway connects as a role of its own and the test takes SELECT on task_changes away from it
 * for a moment. PostgreSQL only: PGlite has a single superuser and no privileges to take away.
 */

const WATCH = `subscription ($id: ID) { omniTaskUpdated(id: $id) { id status version } }`;
// The test moves a task's state and nothing else: no usage, no archive.
const taskState = createTaskStateMachine({ finalStateHooks: { onSucceeded: [], onFailed: [] } });

describe.skipIf(serverUrl === null)('a read of the change log that fails after the last change', POSTGRES_ONLY, () => {
  let base: TestDatabase;
  let admin: postgres.Sql;
  let gateway: TestGateway;
  const role = `og_watch_${randomBytes(4).toString('hex')}`;
  const lines: string[] = [];
  const lineWaiters = new Set<() => void>();

  /** Resolves once the gateway has logged a line matching `pattern`; rejects after 10 s. */
  function logged(pattern: RegExp): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!lines.some((line) => pattern.test(line))) return;
        clearTimeout(timer);
        lineWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        lineWaiters.delete(check);
        reject(new Error(`the gateway did not log ${pattern}; it logged:\n${lines.slice(-20).join('')}`));
      }, 10_000);
      lineWaiters.add(check);
      check();
    });
  }

  beforeAll(async () => {
    base = await createTestDatabase();
    if (base.url === null) throw new Error('unreachable: PostgreSQL only');
    admin = postgres(base.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create role ${role} login`);
    await admin.unsafe(`grant usage on schema public, drizzle to ${role}`);
    await admin.unsafe(`grant select, insert, update, delete on all tables in schema public to ${role}`);
    await admin.unsafe(`grant select on all tables in schema drizzle to ${role}`);
    await admin.unsafe(`grant usage, select on all sequences in schema public to ${role}`);
    const asRole = new URL(base.url);
    asRole.username = role;
    gateway = await startGateway({
      databaseUrl: asRole.toString(),
      // The upstream never moves on its own: the only change is the one the test makes.
      delays: { processingMs: 600_000, finishMs: 1_200_000 },
      env: { LOG_LEVEL: 'warn' },
      logger: createLogger('warn', {
        write: (line: string) => {
          lines.push(line);
          for (const waiter of [...lineWaiters]) waiter();
        },
      }),
    });
    gateway.simulator.settings.callbacks = false;
  });
  afterAll(async () => {
    await gateway?.stop();
    await admin?.unsafe(`drop owned by ${role}`);
    await admin?.end();
    await base?.drop();
    const cluster = postgres(serverUrl ?? '', { max: 1, onnotice: () => {} });
    await cluster.unsafe(`drop role if exists ${role}`);
    await cluster.end();
  });

  it('reads again on its own and delivers the final state, to a task watcher and a tenant-wide one, each tenant only its own', async () => {
    const tenant = await createTenant(gateway, 'Unlucky');
    const neighbour = await createTenant(gateway, 'Neighbour');
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    const theirs = await createTask(gateway, neighbour, TEXT_TO_VIDEO);
    expect(task.status).toBe('SUBMITTED');
    const client = wsClient(gateway.url, tenant.apiKey);
    const neighbourClient = wsClient(gateway.url, neighbour.apiKey);
    try {
      const one = await subscribeWs(client, WATCH, { id: task.id });
      const all = await subscribeWs(client, WATCH, {});
      const neighbours = await subscribeWs(neighbourClient, WATCH, {});
      await one.collector.untilCount(1);
      // The tenant-wide watchers send nothing until a change; a task created now proves each is attached.
      const marker = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const neighbourMarker = await createTask(gateway, neighbour, TEXT_TO_VIDEO);
      await all.collector.until((c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === marker.id), 'the marker task');
      await neighbours.collector.until(
        (c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === neighbourMarker.id),
        "the neighbour's marker task",
      );

      await admin.unsafe(`revoke select on task_changes from ${role}`);
      // Committed outside the gateway: no wake-up; the gateway's periodic read finds them, and fails.
      // One change of each tenant, in one read that fails and is made again.
      await base.db.transaction((tx) => taskState.transition(tx, taskUuid(task.id), { status: 'SUCCEEDED', source: 'test' }));
      await base.db.transaction((tx) => taskState.transition(tx, taskUuid(theirs.id), { status: 'FAILED', source: 'test' }));
      // Logged with the error itself, so that an operator sees why.
      await logged(/"err":\{.*permission denied for table task_changes.*"msg":"change log read failed/);
      await admin.unsafe(`grant select on task_changes to ${role}`);

      await one.collector.untilDone(10_000);
      expect(one.collector.items.map((item) => item.data?.omniTaskUpdated?.status)).toEqual(['SUBMITTED', 'SUCCEEDED']);
      await all.collector.until(
        (c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === task.id && item.data.omniTaskUpdated.status === 'SUCCEEDED'),
        'the tenant-wide watcher to see SUCCEEDED',
      );
      await neighbours.collector.until(
        (c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === theirs.id && item.data.omniTaskUpdated.status === 'FAILED'),
        "the neighbour's watcher to see its task FAILED",
      );
      // A last task of each tenant, seen by its watcher, closes the run: what came before it over that socket has arrived.
      const closing = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const neighbourClosing = await createTask(gateway, neighbour, TEXT_TO_VIDEO);
      await all.collector.until((c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === closing.id), 'the closing task');
      await neighbours.collector.until(
        (c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === neighbourClosing.id),
        "the neighbour's closing task",
      );
      // Each tenant-wide watcher got its own tenant's tasks and nothing else (the read that failed held both).
      const ids = (collector: typeof all.collector) => new Set(collector.items.map((item) => item.data?.omniTaskUpdated?.id));
      expect(ids(all.collector)).toEqual(new Set([marker.id, task.id, closing.id]));
      expect(ids(neighbours.collector)).toEqual(new Set([neighbourMarker.id, theirs.id, neighbourClosing.id]));
    } finally {
      await client.dispose();
      await neighbourClient.dispose();
    }
  });
});
