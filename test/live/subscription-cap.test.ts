import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';

/**
 * MAX_SUBSCRIPTIONS_PER_TENANT: a tenant's live subscriptions on one instance, across all its
 * connections. The one over the cap is refused with SUBSCRIPTION_LIMIT; other tenants are not
 * affected, and a slot that is given back can be used again.
 */

const WATCH = 'subscription { omniTaskUpdated { id status } }';

let gateway: TestGateway;
let a: TestTenant;
let b: TestTenant;

beforeAll(async () => {
  gateway = await startGateway({ env: { MAX_SUBSCRIPTIONS_PER_TENANT: '3' } });
  a = await createTenant(gateway, 'Capped A');
  b = await createTenant(gateway, 'Capped B');
});
afterAll(async () => {
  await gateway?.stop();
});

describe('the per-tenant subscription cap', () => {
  it('refuses the subscription over the cap with SUBSCRIPTION_LIMIT, for that tenant only, until a slot is given back', async () => {
    // Two connections of tenant A: the cap counts the tenant's subscriptions, not a connection's.
    const [first, second, other] = [wsClient(gateway.url, a.apiKey), wsClient(gateway.url, a.apiKey), wsClient(gateway.url, b.apiKey)];
    try {
      const held = [await subscribeWs(first, WATCH), await subscribeWs(first, WATCH), await subscribeWs(second, WATCH)];
      await expect.poll(() => gateway.app.services.watch.size(), { timeout: 5_000 }).toBe(3);

      const refused = await subscribeWs(second, WATCH);
      await refused.collector.until((c) => c.done || c.items.length > 0, 'the refusal');
      const errors =
        refused.collector.items[0]?.errors ?? (refused.collector.error as { message: string; extensions?: Record<string, unknown> }[]);
      expect(errors?.[0]).toMatchObject({
        message: expect.stringContaining('Too many live subscriptions: this tenant already has 3 on this gateway instance'),
        extensions: { code: 'SUBSCRIPTION_LIMIT' },
      });
      expect(gateway.app.services.watch.size()).toBe(3);

      // Tenant B is not affected.
      const theirs = await subscribeWs(other, WATCH);
      await expect.poll(() => gateway.app.services.watch.size(), { timeout: 5_000 }).toBe(4);

      // A gives one back, and its next subscription is served: it hears A's next task.
      held[0]!.unsubscribe();
      await expect.poll(() => gateway.app.services.watch.size(), { timeout: 5_000 }).toBe(3);
      const again = await subscribeWs(second, WATCH);
      const task = await createTask(gateway, a, TEXT_TO_VIDEO);
      await again.collector.until((c) => c.items.some((item) => item.data?.omniTaskUpdated?.id === task.id), 'the new task');
      expect(theirs.collector.items.some((item) => item.data?.omniTaskUpdated?.id === task.id)).toBe(false);
    } finally {
      await Promise.all([first.dispose(), second.dispose(), other.dispose()]);
    }
  });
});
