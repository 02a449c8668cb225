import { decodeGlobalID } from '@pothos/plugin-relay';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { callbackBody, callbackUrlOf, createTask, createTenant, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { TaskView, TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { Collector } from '../support/subscriptions.ts';
import { seededRandom } from '../support/random.ts';
import { mapPool, NO_RATE_LIMITS, shuffle } from './load.ts';

const TASKS = 100;
const CALLBACKS = 10_000;
const PER_TASK = CALLBACKS / TASKS;
const CONCURRENCY = 64;
const SEED = Number(process.env.SECURITY_SEED ?? Date.now() % 2 ** 31);

type CallbackStatus = 'submitted' | 'processing' | 'succeed' | 'failed';
type Plan = { task: TaskView; url: string; final: 'succeed' | 'failed'; callbacks: CallbackStatus[] };
type Update = { id: string; status: string; version: number };

const WATCH = 'subscription { omniTaskUpdated { id status version } }';
const RANK: Record<string, number> = { PENDING: 0, SUBMITTED: 1, PROCESSING: 2, SUCCEEDED: 3, FAILED: 3 };
const FINAL_STATUS = { succeed: 'SUCCEEDED', failed: 'FAILED' } as const;

function updates(collector: Collector): Update[] {
  return collector.items.map((item) => item.data?.omniTaskUpdated as Update);
}

/**
 * One task's 100 callbacks: its true final status at least once, often many times (duplicates),
 * stale `submitted`s, and, for most tasks, `processing`s, all shuffled so that stale statuses also
 * arrive after the final one. A fifth of the tasks get no `processing` at all, so their history is
 * known exactly: SUBMITTED (create) → final, version 3.
 */
function planCallbacks(random: () => number, final: 'succeed' | 'failed', withProcessing: boolean): CallbackStatus[] {
  const finals = 1 + Math.floor(random() * 30);
  const processing = withProcessing ? 1 + Math.floor(random() * 40) : 0;
  const callbacks: CallbackStatus[] = [
    ...Array<CallbackStatus>(finals).fill(final),
    ...Array<CallbackStatus>(processing).fill('processing'),
    ...Array<CallbackStatus>(PER_TASK - finals - processing).fill('submitted'),
  ];
  return shuffle(callbacks, random);
}

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  // A quiet upstream: it never moves a task on by itself and sends no callbacks, so every status
  // change in this file comes from the callbacks the test posts. The test finishes each task
  // upstream before the flood (a final callback is confirmed by an upstream read, which must
  // agree), and the reconciler stays idle, so that it does not report those finals first.
  gateway = await startGateway({
    delays: { processingMs: 600_000, finishMs: 1_200_000 },
    env: { ...NO_RATE_LIMITS, RECONCILER_INTERVAL_MS: '600000' },
  });
  gateway.simulator.settings.callbacks = false;
  tenant = await createTenant(gateway, 'Flooded');
});
afterAll(async () => {
  await gateway?.stop();
});

describe('a flood of 10,000 callbacks across 100 tasks', () => {
  it('ends every task in its true final state, never moves a version back, and meters each task once', { timeout: 120_000 }, async () => {
    const random = seededRandom(SEED);
    const client = wsClient(gateway.url, tenant.apiKey);
    try {
      const watch = await subscribeWs(client, WATCH);
      // An ack does not prove the subscription is live; the first task, seen arriving, does.
      const first = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      await watch.collector.until((c) => updates(c).some((u) => u.id === first.id), 'the first task on the tenant feed');
      const rest = await mapPool(Array.from({ length: TASKS - 1 }), 8, () => createTask(gateway, tenant, TEXT_TO_VIDEO));
      const plans: Plan[] = [first, ...rest].map((task) => {
        expect(task).toMatchObject({ status: 'SUBMITTED', version: 2 });
        const final = random() < 0.5 ? 'succeed' : 'failed';
        const callbacks = planCallbacks(random, final, random() >= 0.2);
        return { task, url: callbackUrlOf(gateway, task.id), final, callbacks };
      });
      // A final callback is confirmed by an upstream read: the upstream finished each task as its callbacks say.
      for (const plan of plans) expect(gateway.simulator.finish(callbackBody(plan.task, plan.final))).toBe(true);

      const sends = shuffle(
        plans.flatMap((plan, taskIndex) => plan.callbacks.map((status) => ({ taskIndex, status }))),
        random,
      );
      expect(sends).toHaveLength(CALLBACKS);
      const changedBy = plans.map(() => [] as CallbackStatus[]);
      const refusals: string[] = [];
      const started = performance.now();
      await mapPool(sends, CONCURRENCY, async ({ taskIndex, status }) => {
        const plan = plans[taskIndex]!;
        const response = await fetch(plan.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(callbackBody(plan.task, status)),
        });
        const text = await response.text();
        if (response.status !== 200) {
          refusals.push(`${status} for task ${taskIndex}: ${response.status} ${text}`);
          return;
        }
        if ((JSON.parse(text) as { changed: boolean }).changed) changedBy[taskIndex]!.push(status);
      });
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `callback flood (${gateway.database.driver}, seed ${SEED}): ${CALLBACKS} callbacks in ${seconds.toFixed(2)} s = ` +
          `${Math.round(CALLBACKS / seconds)} callbacks/s at concurrency ${CONCURRENCY}`,
      );
      expect(refusals, 'every callback is acknowledged with 200').toEqual([]);

      // What the receiver says it applied: the final status exactly once, processing at most once
      // (only if it won the race against the final), a stale submitted never.
      for (const [index, plan] of plans.entries()) {
        const changed = changedBy[index]!;
        expect(
          changed.filter((status) => status === plan.final),
          `task ${index}: ${changed}`,
        ).toHaveLength(1);
        expect(changed.filter((status) => status === 'processing').length, `task ${index}: ${changed}`).toBeLessThanOrEqual(1);
        expect(
          changed.filter((status) => status !== plan.final && status !== 'processing'),
          `task ${index}`,
        ).toEqual([]);
      }

      // The tenant-wide subscriber hears every task's final version (or times out), in order.
      const finalVersion = (index: number) => 2 + changedBy[index]!.length;
      await watch.collector.until(
        (c) => {
          const last = new Map(updates(c).map((u) => [u.id, u.version]));
          return plans.every((plan, index) => last.get(plan.task.id) === finalVersion(index));
        },
        'every final version on the tenant feed',
        30_000,
      );
      for (const [index, plan] of plans.entries()) {
        const seen = updates(watch.collector).filter((u) => u.id === plan.task.id);
        const versions = seen.map((u) => u.version);
        for (let i = 1; i < seen.length; i += 1) {
          expect(versions[i], `task ${index} versions ${versions}`).toBeGreaterThan(versions[i - 1]!);
          expect(RANK[seen[i]!.status]!, `task ${index} statuses ${seen.map((u) => u.status)}`).toBeGreaterThan(RANK[seen[i - 1]!.status]!);
        }
        expect(seen.at(-1)).toEqual({ id: plan.task.id, status: FINAL_STATUS[plan.final], version: finalVersion(index) });
      }
      watch.unsubscribe();

      // The stored tasks: true final state; version = distinct forward transitions (create's
      // PENDING → SUBMITTED plus each applied callback) + 1; a task without processing callbacks has
      // exactly PENDING → SUBMITTED → final.
      const query = 'query ($id: ID!) { omniTask(id: $id) { id status version statusMessage completedAt } }';
      const stored = await mapPool(
        plans,
        16,
        async (plan) =>
          expectData(await gateway.graphql<{ omniTask: Record<string, unknown> }>(query, { id: plan.task.id }, tenant.apiKey), query)
            .omniTask,
      );
      for (const [index, plan] of plans.entries()) {
        expect(stored[index]).toMatchObject({ status: FINAL_STATUS[plan.final], version: finalVersion(index) });
        expect(stored[index]!.completedAt).not.toBeNull();
        if (!plan.callbacks.includes('processing')) expect(finalVersion(index), `task ${index}`).toBe(3);
      }

      // The audit trail agrees: status events carry versions 1, 2, …, final, each strictly forward.
      const transitions = await queryRows<{ task_id: string; from_status: string | null; to_status: string; version: number }>(
        gateway.database.db,
        sql`select task_id, from_status, to_status, version from task_events
            where kind = 'status' and task_id in (select id from omni_tasks where tenant_id = ${tenantUuid()})
            order by task_id, version`,
      );
      for (const [index, plan] of plans.entries()) {
        const mine = transitions.filter((row) => row.task_id === taskUuid(plan.task.id));
        expect(
          mine.map((row) => Number(row.version)),
          `task ${index}`,
        ).toEqual(Array.from({ length: finalVersion(index) }, (_, i) => i + 1));
        for (const row of mine.slice(1)) {
          expect(RANK[row.to_status]!, `task ${index}: ${JSON.stringify(mine)}`).toBeGreaterThan(RANK[row.from_status ?? 'PENDING']!);
        }
        expect(mine.at(-1)?.to_status).toBe(FINAL_STATUS[plan.final]);
      }

      // Usage: exactly one ledger row per task, of the kind its final state calls for.
      const usage = await queryRows<{ task_id: string; kind: string }>(
        gateway.database.db,
        sql`select task_id, kind from usage_events where tenant_id = ${tenantUuid()}`,
      );
      expect(usage).toHaveLength(TASKS);
      const expectedUsage = plans.map((plan) => ({
        task_id: taskUuid(plan.task.id),
        kind: plan.final === 'succeed' ? 'video' : 'failure',
      }));
      const byTask = (a: { task_id: string }, b: { task_id: string }) => a.task_id.localeCompare(b.task_id);
      expect(usage.map((row) => ({ task_id: row.task_id, kind: row.kind })).sort(byTask)).toEqual(expectedUsage.sort(byTask));
      const succeeded = plans.filter((plan) => plan.final === 'succeed').length;
      // The whole run, even one that crosses a month's end (usage defaults to the current month).
      const usageQuery =
        'query ($from: DateTime, $to: DateTime) { viewer { usage(from: $from, to: $to) { succeededTasks failedTasks videoSeconds } } }';
      const span = { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date(Date.now() + 86_400_000).toISOString() };
      const summary = expectData(
        await gateway.graphql<{ viewer: { usage: Record<string, number> } }>(usageQuery, span, tenant.apiKey),
        usageQuery,
      );
      expect(summary.viewer.usage).toEqual({ succeededTasks: succeeded, failedTasks: TASKS - succeeded, videoSeconds: succeeded * 5 });
    } finally {
      await client.dispose();
    }
  });
});

function tenantUuid(): string {
  return decodeGlobalID(tenant.id).id;
}
