import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { connectDatabase, queryRows } from '../../src/db/database.ts';
import { createEmptyPostgresDatabase, serverUrl } from '../support/database.ts';
import { freePort, listeningUrl, spawnGateway } from '../support/process.ts';
import type { GatewayProcess } from '../support/process.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import {
  CREATE,
  CREATE_PATH,
  createTenantAt,
  gatewayProcessEnv,
  graphqlAt,
  startUpstream,
  taskGlobalId,
  UPSTREAM_KEY,
  waitFor,
  WATCH_TASK,
} from './support.ts';
import type { Upstream } from './support.ts';

/*
 * Issue 10, item 1: the gateway process dies after the upstream accepted a create and before the
 * gateway recorded the answer. The task row (PENDING, our id as external_task_id) was written
 * before the call, so a restarted gateway must find the task upstream by its external id instead
 * of submitting it again, finish it, and meter it once.
 *
 * The store is the suite's: PostgreSQL when DATABASE_URL is set, else PGlite under a DATA_DIR that
 * survives the SIGKILL (PGlite leaves a postmaster.pid behind, which does not stop the next start).
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Store = { name: string; env: Record<string, string>; dataDir: string; databaseUrl: string | null };

async function freshStore(): Promise<Store> {
  const dataDir = mkdtempSync(join(tmpdir(), 'omni-crash-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  // A real upstream key requires PUBLIC_BASE_URL: a port chosen now, kept across the restart.
  const port = await freePort();
  const address = { PORT: String(port), PUBLIC_BASE_URL: `http://127.0.0.1:${port}` };
  if (serverUrl === null) return { name: 'PGlite', env: { DATA_DIR: dataDir, ...address }, dataDir, databaseUrl: null };
  const database = await createEmptyPostgresDatabase();
  if (database === null) throw new Error('unreachable: DATABASE_URL is set');
  cleanups.push(() => database.drop());
  return { name: 'PostgreSQL', env: { DATA_DIR: dataDir, DATABASE_URL: database.url, ...address }, dataDir, databaseUrl: database.url };
}

/** Reads the store directly. With PGlite no gateway may be running (it holds the files). */
async function inspect<T>(store: Store, query: SQL): Promise<T[]> {
  const database = await connectDatabase({ databaseUrl: store.databaseUrl, dataDir: store.dataDir });
  try {
    return await queryRows<T>(database.db, query);
  } finally {
    await database.close();
  }
}

function startGatewayProcess(store: Store, upstream: Upstream): GatewayProcess {
  const gateway = spawnGateway({ ...gatewayProcessEnv(upstream.url), ...store.env });
  cleanups.push(() => gateway.kill('SIGKILL'));
  return gateway;
}

type Crash = {
  name: string;
  /** Arms the upstream before the create is sent. */
  arm(upstream: Upstream): void;
  /** Resolves once the gateway may be killed; returns our task id (the external_task_id). */
  killPoint(upstream: Upstream): Promise<string>;
  /** Waits, after the kill, for the upstream to have accepted the task. */
  afterKill?(upstream: Upstream, taskId: string): Promise<unknown>;
};

const crashes: Crash[] = [
  {
    name: 'after the upstream accepted the create, while its answer is on the way',
    arm: (upstream) => {
      upstream.holdCreates = true;
    },
    async killPoint(upstream) {
      const held = await upstream.nextHeldCreate();
      // The simulator itself says the task exists, with our id as its external id.
      expect(upstream.simulator.stats.byExternalTaskId[held.externalTaskId]).toEqual({ requests: 1, accepted: 1 });
      return held.externalTaskId;
    },
  },
  {
    name: 'while a slow upstream is still working on the create (it accepts the task after the crash)',
    arm: (upstream) => {
      upstream.simulator.faults.push({ op: 'create', kind: 'slow', ms: 1_500 });
    },
    async killPoint(upstream) {
      await upstream.nextCreateReceived();
      const ids = Object.keys(upstream.simulator.stats.byExternalTaskId);
      expect(ids).toHaveLength(1);
      expect(upstream.simulator.stats.createsAccepted).toBe(0);
      return ids[0]!;
    },
    // The slow upstream finishes reading and accepts the task after the gateway died.
    afterKill: (upstream, taskId) =>
      waitFor('the upstream to accept the create', () => upstream.simulator.stats.byExternalTaskId[taskId]?.accepted === 1),
  },
];

describe(`a gateway killed between the upstream accepting a create and recording it (${serverUrl === null ? 'PGlite' : 'PostgreSQL'})`, () => {
  it.each(crashes)(
    '$name: the restarted gateway finds the task by external id, finishes it once, meters it once',
    async (crash) => {
      const store = await freshStore();
      // Callbacks off: only the restarted gateway's lookup by external id can learn what happened.
      const upstream = await startUpstream({ delays: { processingMs: 100, finishMs: 300 } });
      cleanups.push(() => upstream.close());
      upstream.simulator.settings.callbacks = false;

      const first = startGatewayProcess(store, upstream);
      const firstUrl = await listeningUrl(first);
      const tenant = await createTenantAt(firstUrl, 'Crash');

      crash.arm(upstream);
      const creation = graphqlAt(firstUrl, tenant.apiKey, CREATE, {
        input: { prompt: 'A lighthouse in a storm', mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 },
      }).then(
        (answer) => ({ answered: true as const, answer }),
        (error: unknown) => ({ answered: false as const, error }),
      );
      // Should the gateway answer instead of reaching the kill point, fail with its answer and log.
      const taskId = await Promise.race([
        crash.killPoint(upstream),
        creation.then((outcome) => {
          throw new Error(`the create ended before the kill point: ${JSON.stringify(outcome)}\n${first.lines.join('\n')}`);
        }),
      ]);
      first.child.kill('SIGKILL');
      await first.exited;
      const outcome = await creation;
      expect(outcome.answered, `the mutation was answered before the kill: ${JSON.stringify(outcome)}`).toBe(false);

      await crash.afterKill?.(upstream, taskId);
      const before = await inspect<{ status: string; upstream_task_id: string | null; version: number; pending_body: number }>(
        store,
        sql`select status, upstream_task_id, version,
                 (select count(*)::int from task_submissions s where s.task_id = t.id) as pending_body
          from omni_tasks t where id = ${taskId}`,
      );
      // The crash window: the upstream has the task, our row still says nobody answered.
      expect(before).toEqual([{ status: 'PENDING', upstream_task_id: null, version: 1, pending_body: 1 }]);
      const upstreamTaskId = await waitFor('the upstream task', () =>
        fetch(`${upstream.url}${CREATE_PATH}/${taskId}`, { headers: { authorization: `Bearer ${UPSTREAM_KEY}` } })
          .then((response) => response.json() as Promise<{ data?: { task_id?: string } }>)
          .then((body) => body.data?.task_id),
      );

      const restartedAt = Date.now();
      const second = startGatewayProcess(store, upstream);
      const secondUrl = await listeningUrl(second);
      const client = wsClient(secondUrl, tenant.apiKey);
      cleanups.push(() => client.dispose());
      const watch = await subscribeWs(client, WATCH_TASK, { id: taskGlobalId(taskId) });
      await watch.collector.untilDone(20_000);
      expect(watch.collector.error).toBeNull();
      const last = watch.collector.items.at(-1)?.data?.omniTaskUpdated as { status: string; upstreamTaskId: string } | undefined;
      expect(last).toMatchObject({ status: 'SUCCEEDED', upstreamTaskId });

      // Exactly one task upstream for this external id: the create was never sent again.
      const stats = upstream.simulator.stats;
      expect(stats.byExternalTaskId[taskId]).toEqual({ requests: 1, accepted: 1 });
      expect(stats.createsAccepted).toBe(1);
      const afterRestart = upstream.requests.filter((request) => request.at >= restartedAt);
      expect(afterRestart.filter((request) => request.method === 'POST')).toEqual([]);
      // Recovered by our id (the external task id), since the upstream id was never recorded.
      expect(afterRestart.some((request) => request.method === 'GET' && request.path === `${CREATE_PATH}/${taskId}`)).toBe(true);

      const usage = await graphqlAt(secondUrl, tenant.apiKey, '{ viewer { usage { succeededTasks failedTasks videoSeconds } } }');
      expect(usage.body?.data).toEqual({ viewer: { usage: { succeededTasks: 1, failedTasks: 0, videoSeconds: 5 } } });

      expect(await second.kill('SIGTERM')).toBe(0);
      const ledger = await inspect(store, sql`select kind, video_seconds from usage_events where task_id = ${taskId}`);
      expect(ledger).toEqual([{ kind: 'video', video_seconds: 5 }]);
      const tasks = await inspect(store, sql`select id, status, upstream_task_id from omni_tasks`);
      expect(tasks).toEqual([{ id: taskId, status: 'SUCCEEDED', upstream_task_id: upstreamTaskId }]);
    },
    60_000,
  );
});

describe(`a gateway killed while it dispatches waiting tasks (${serverUrl === null ? 'PGlite' : 'PostgreSQL'})`, () => {
  it('restarted, it sends every task of the queue upstream exactly once, within the budget', async () => {
    const store = await freshStore();
    const upstream = await startUpstream({ delays: { processingMs: 50, finishMs: 400 } });
    cleanups.push(() => upstream.close());
    const env = { ...gatewayProcessEnv(upstream.url), ...store.env, UPSTREAM_MAX_IN_FLIGHT: '2' };
    const first = spawnGateway(env);
    cleanups.push(() => first.kill('SIGKILL'));
    const firstUrl = await listeningUrl(first);
    const tenant = await createTenantAt(firstUrl, 'Queue crash');

    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        graphqlAt(firstUrl, tenant.apiKey, CREATE, {
          input: { prompt: `Queued ${i}`, mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 },
        }),
      ),
    );
    const created = answers.map((answer) => answer.body?.data?.createOmniVideo?.task as { id: string; status: string });
    const ids = created.map((task) => decodeGlobalID(task.id).id);
    // Two slots: two tasks went upstream in their requests, the others wait in the queue.
    expect(created.filter((task) => task.status === 'PENDING').length).toBeGreaterThanOrEqual(4);

    // The next dispatch from the queue reaches the upstream, which accepts it; the answer is held
    // and the gateway dies before it can record it.
    upstream.holdCreates = true;
    const held = await upstream.nextHeldCreate(20_000);
    expect(ids).toContain(held.externalTaskId);
    first.child.kill('SIGKILL');
    await first.exited;
    upstream.holdCreates = false;

    const second = spawnGateway(env);
    cleanups.push(() => second.kill('SIGKILL'));
    const secondUrl = await listeningUrl(second);
    const statuses = async () => {
      const answer = await graphqlAt(secondUrl, tenant.apiKey, '{ omniTasks(first: 10) { edges { node { status } } } }');
      const edges = (answer.body?.data?.omniTasks?.edges ?? []) as { node: { status: string } }[];
      return edges.map((edge) => edge.node.status);
    };
    await waitFor('every task to succeed', async () => (await statuses()).filter((status) => status === 'SUCCEEDED').length === 6, {
      timeoutMs: 40_000,
      intervalMs: 100,
    });

    const stats = upstream.simulator.stats;
    // Sent once each, the held one included (found by its external id, not sent again).
    for (const id of ids) expect(stats.byExternalTaskId[id], id).toEqual({ requests: 1, accepted: 1 });
    expect(stats.maxInFlight).toBeLessThanOrEqual(2);
    expect(await second.kill('SIGTERM')).toBe(0);
    const ledger = await inspect<{ n: number }>(store, sql`select count(*)::int as n from usage_events where kind = 'video'`);
    expect(Number(ledger[0]?.n)).toBe(6);
  }, 90_000);
});
