import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createTenant, createVideo, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { CreateResult, TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { GatewayOptions, TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import { WATCH_TASK } from './support.ts';

/*
 * One create at a time per task: while a create (with its own retries) is in flight, the task is
 * not due for any reconciler, however short PENDING_RECHECK_SECONDS is; once the attempt gives up,
 * the reconciler takes over (and after a crash, once the lease runs out: crash-recovery.test.ts).
 */

const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const gateway of gateways.splice(0)) await gateway.stop();
});

async function gatewayWith(client: GatewayOptions['client']): Promise<TestGateway> {
  const gateway = await startGateway({
    delays: { processingMs: 50, finishMs: 150 },
    client,
    env: { PENDING_RECHECK_SECONDS: '1', RECONCILER_INTERVAL_MS: '50' },
  });
  gateways.push(gateway);
  return gateway;
}

type Created = Extract<CreateResult, { __typename: 'CreateOmniVideoSuccess' }>;

/**
 * Sends a create and resolves as soon as it is decidable whether another create overtook it: when
 * the mutation answers (its attempt ended), or when more than `limit` creates reached the upstream
 * (a bounded poll of the simulator's counters, stopped when the mutation answers).
 */
async function createUnlessOvertaken(
  gateway: TestGateway,
  limit: number,
): Promise<{ tenant: TestTenant; result: CreateResult | 'overtaken' }> {
  const tenant = await createTenant(gateway, 'Leased');
  let answered = false;
  const creation = createVideo(gateway, tenant, TEXT_TO_VIDEO).finally(() => {
    answered = true;
  });
  const overtaken = (async () => {
    const deadline = Date.now() + 60_000;
    while (!answered && Date.now() < deadline) {
      if (gateway.simulator.stats.createRequests > limit) return 'overtaken' as const;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return creation;
  })();
  return { tenant, result: await Promise.race([creation, overtaken]) };
}

async function untilFinal(gateway: TestGateway, tenant: TestTenant, task: Created['task']): Promise<string> {
  const client = wsClient(gateway.url, tenant.apiKey);
  try {
    const watch = await subscribeWs(client, WATCH_TASK, { id: task.id });
    await watch.collector.untilDone(30_000);
    const last = watch.collector.items.at(-1)?.data?.omniTaskUpdated as { status: string } | undefined;
    return last?.status ?? `no update: ${JSON.stringify(watch.collector.items)}`;
  } finally {
    await client.dispose();
  }
}

describe('a create in flight holds its task', () => {
  it('With the upstream holding the first create for 20 s and a short PENDING_RECHECK_SECONDS, exactly one create reaches the upstream until the first attempt gives up.', async () => {
    // One attempt, which gives up at the client's 5 s timeout; the upstream holds it for 20 s.
    const gateway = await gatewayWith({ timeoutMs: 5_000, maxAttempts: 1 });
    gateway.simulator.faults.push({ op: 'create', kind: 'slow', ms: 20_000 });
    const { tenant, result } = await createUnlessOvertaken(gateway, 1);
    expect(result, 'a second create reached the upstream while the first was in flight').not.toBe('overtaken');
    expect(gateway.simulator.stats.createRequests).toBe(1);
    expect(result).toMatchObject({ __typename: 'CreateOmniVideoSuccess', task: { status: 'PENDING' } });
    const { task } = result as Created;
    const taskId = taskUuid(task.id);
    expect(gateway.simulator.stats.byExternalTaskId[taskId]).toEqual({ requests: 1, accepted: 0 });

    // The attempt gave up: the reconciler takes over, finds nothing upstream, submits once more.
    expect(await untilFinal(gateway, tenant, task)).toBe('SUCCEEDED');
    expect(gateway.simulator.stats.byExternalTaskId[taskId]).toEqual({ requests: 2, accepted: 1 });
  }, 40_000);

  it("covers the create's own retries: no create of the reconciler between a timed-out attempt and its retry", async () => {
    // The first attempt hangs until the client's 2 s timeout; the lookup finds nothing; the retry is accepted.
    const gateway = await gatewayWith({ timeoutMs: 2_000, maxAttempts: 2 });
    gateway.simulator.faults.push({ op: 'create', kind: 'hang' });
    const { tenant, result } = await createUnlessOvertaken(gateway, 2);
    expect(result, 'a third create reached the upstream during the retries').not.toBe('overtaken');
    expect(gateway.simulator.stats.createRequests).toBe(2);
    expect(result).toMatchObject({ __typename: 'CreateOmniVideoSuccess' });
    const { task } = result as Created;
    expect(gateway.simulator.stats.byExternalTaskId[taskUuid(task.id)]).toEqual({ requests: 2, accepted: 1 });
    // Accepted through the create's own retry, not through a create of the reconciler: recorded by
    // the create's answer, or by the upstream's own "submitted" callback when that came first.
    const submitted = await queryRows<{ source: string }>(
      gateway.database.db,
      sql`select source from task_events where task_id = ${taskUuid(task.id)} and kind = 'status' and to_status = 'SUBMITTED'`,
    );
    expect(submitted).toHaveLength(1);
    expect(['create', 'webhook']).toContain(submitted[0]?.source);
    expect(await untilFinal(gateway, tenant, task)).toBe('SUCCEEDED');
    expect(gateway.simulator.stats.createRequests).toBe(2);
  }, 40_000);
});
