import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import type { Db } from '../../src/db/database.ts';
import { taskUuid } from '../support/fixtures.ts';
import type { Simulator } from '../../src/simulator/server.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import type { Collector } from '../support/subscriptions.ts';
import { graphqlAt, waitFor } from '../reliability/support.ts';

export const CREATE_QUEUED = `mutation ($input: CreateOmniVideoInput!) {
  createOmniVideo(input: $input) {
    __typename
    ... on CreateOmniVideoSuccess { task { id status priority queuePosition units upstreamUnits } }
    ... on Error { message }
  }
}`;

const WATCH = 'subscription { omniTaskUpdated { id status statusMessage } }';

export type Created = { id: string; status: string; priority: string; queuePosition: number | null };

export const input = (prompt: string, extra: Record<string, unknown> = {}) => ({
  prompt,
  mode: 'STD',
  aspectRatio: 'RATIO_16_9',
  durationSeconds: 5,
  ...extra,
});

/** Creates a task and returns it; fails the test on anything but CreateOmniVideoSuccess. */
export async function createTask(url: string, apiKey: string, variables: Record<string, unknown>): Promise<Created> {
  const answer = await graphqlAt(url, apiKey, CREATE_QUEUED, { input: variables });
  const result = answer.body?.data?.createOmniVideo as { __typename: string; task?: Created } | undefined;
  if (result?.__typename !== 'CreateOmniVideoSuccess' || result.task === undefined) throw new Error(`create failed: ${answer.text}`);
  return result.task;
}

function finals(collector: Collector): Map<string, string> {
  const seen = new Map<string, string>();
  for (const item of collector.items) {
    const task = item.data?.omniTaskUpdated as { id: string; status: string } | undefined;
    if (task && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(task.status)) seen.set(task.id, task.status);
  }
  return seen;
}

/** Finishes every task running upstream, again and again, until `done` (a bounded loop on the database's view). */
async function finishRunning(db: Db, simulator: Simulator, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 100_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('tasks did not all finish within 100 s');
    const running = await queryRows<{ upstream_task_id: string }>(
      db,
      sql`select upstream_task_id from omni_tasks where status in ('SUBMITTED', 'PROCESSING') and upstream_task_id is not null`,
    );
    for (const row of running) simulator.finish({ task_id: row.upstream_task_id });
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Frees one upstream slot the way time would: the simulator finishes the task that has held its
 * slot longest; then waits until the upstream has accepted `accepted` creates in all (the next
 * waiting task went).
 */
export async function freeOldestSlot(db: Db, simulator: Simulator, accepted: number): Promise<void> {
  const [oldest] = await queryRows<{ upstream_task_id: string }>(
    db,
    sql`select upstream_task_id from omni_tasks where status in ('SUBMITTED', 'PROCESSING') order by submitted_at, id limit 1`,
  );
  expect(simulator.finish({ task_id: oldest!.upstream_task_id })).toBe(true);
  await waitFor(`create ${accepted} upstream`, () => simulator.stats.createsAccepted === accepted || undefined);
}

/**
 * Acceptance 1 and 2 of the scheduling issue: tenant A submits 50 tasks (spread over `urls`), then
 * tenant B submits one; B's task must reach the upstream before at least 45 of A's, the simulator
 * never holds more than `limit` in flight, every task ends SUCCEEDED and was created upstream once.
 */
export async function burstThenOne(options: {
  urls: string[];
  simulator: Simulator;
  a: { apiKey: string };
  b: { apiKey: string };
  limit: number;
  db: Db;
}): Promise<{ bOrder: number; aAfterB: number; maxInFlight: number; bQueuePosition: number | null }> {
  const { urls, simulator, a, b } = options;
  const watchUrl = urls[0]!;
  const clients = [wsClient(watchUrl, a.apiKey), wsClient(watchUrl, b.apiKey)];
  try {
    const [watchA, watchB] = await Promise.all([subscribeWs(clients[0]!, WATCH, {}), subscribeWs(clients[1]!, WATCH, {})]);
    const aTasks = await Promise.all(Array.from({ length: 50 }, (_, i) => createTask(urls[i % urls.length]!, a.apiKey, input(`A ${i}`))));
    const bTask = await createTask(urls[urls.length - 1]!, b.apiKey, input('B 0'));
    // The test plays the upstream's clock: tasks run until both tenants have submitted, then each
    // finishes as soon as it runs, so what A's submission takes (slow on PGlite) cannot matter.
    const done = () => finals(watchA.collector).size >= 50 && finals(watchB.collector).size >= 1;
    await finishRunning(options.db, simulator, done);
    await watchA.collector.until((c) => finals(c).size >= 50, '50 final tasks of A', 100_000);
    await watchB.collector.until((c) => finals(c).size >= 1, "B's task final", 100_000);
    const aFinals = finals(watchA.collector);
    const bFinals = finals(watchB.collector);
    for (const task of aTasks) expect(aFinals.get(task.id), task.id).toBe('SUCCEEDED');
    expect(bFinals.get(bTask.id)).toBe('SUCCEEDED');
    const stats = simulator.stats;
    for (const task of [...aTasks, bTask]) expect(stats.byExternalTaskId[taskUuid(task.id)]?.accepted, task.id).toBe(1);
    const bOrder = stats.acceptedOrder[taskUuid(bTask.id)]!;
    const aAfterB = aTasks.filter((task) => stats.acceptedOrder[taskUuid(task.id)]! > bOrder).length;
    expect(stats.maxInFlight).toBeLessThanOrEqual(options.limit);
    expect(aAfterB).toBeGreaterThanOrEqual(45);
    return { bOrder, aAfterB, maxInFlight: stats.maxInFlight, bQueuePosition: bTask.queuePosition };
  } finally {
    await Promise.all(clients.map((client) => client.dispose()));
  }
}
