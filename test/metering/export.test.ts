import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, taskUuid } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { insertTaskRows } from '../support/database.ts';
import { ADMIN_KEY, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

/**
 * The usage export (`GET /usage/events.csv`) as a client downloads it: a ledger longer than the
 * export's page of 1,000 events, with many events at the same instant, arrives whole, in order,
 * each event once; and every refusal says why. (test/metering/usage.test.ts checks the rows of
 * real tasks and who may see them.)
 */

const MARCH = '?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z';
const EVENTS = 2_345;

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  await gateway?.stop();
});

/** `count` usage events of the tenant in March 2026, seven to an instant. */
async function seedEvents(tenant: TestTenant, count: number): Promise<void> {
  const tenantId = taskUuid(tenant.id);
  const taskIds = await insertTaskRows(gateway.database.db, tenantId, { status: 'SUCCEEDED', count });
  await gateway.database.db.execute(
    sql`insert into usage_events (tenant_id, task_id, kind, mode, has_video_input, video_seconds, seconds_source, rate, units, occurred_at)
        select ${tenantId}, t.id, 'video', 'STD', false, 5, 'result', 0.6, 3,
               timestamptz '2026-03-10T00:00:00Z' + make_interval(secs => (t.n / 7)::int)
        from unnest(${`{${taskIds.join(',')}}`}::uuid[]) with ordinality as t(id, n)`,
  );
}

async function download(key: string, query: string, init: RequestInit = {}) {
  const response = await fetch(`${gateway.url}/usage/events.csv${query}`, { ...init, headers: { authorization: `Bearer ${key}` } });
  return { response, text: await response.text() };
}

describe('usage export', () => {
  it('streams a ledger of several pages whole, in order, each event once, as a file to keep', async () => {
    const tenant = await createTenant(gateway, 'Paged');
    const other = await createTenant(gateway, 'Other');
    await seedEvents(tenant, EVENTS);
    await seedEvents(other, 3);

    const { response, text } = await download(tenant.apiKey, MARCH);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="usage-2026-03-01.csv"');
    expect(response.headers.get('cache-control')).toBe('no-store');
    const rows = text
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(','));
    expect(rows).toHaveLength(EVENTS);
    expect(new Set(rows.map((row) => row[0])).size).toBe(EVENTS);
    for (const row of rows) {
      expect(row).toHaveLength(12);
      expect(row[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      // No upstream units were reported for these events: an empty field, not a placeholder.
      expect(row[10]).toBe('');
    }
    expect(new Set(rows.map((row) => row[1]))).toEqual(new Set([tenant.id]));
    // In (occurred_at, event id) order, the order a client resumes from.
    const keys = rows.map((row) => `${row[11]} ${row[0]}`);
    expect(keys).toEqual([...keys].sort());

    // The admin's export of every tenant holds both ledgers.
    const everyone = await download(ADMIN_KEY, MARCH);
    expect(everyone.text.trim().split('\n')).toHaveLength(1 + EVENTS + 3);
  });

  it('says why it refuses: the method, a key, the rate, the dates, a tenantId from a tenant', async () => {
    const slow = await createTenant(gateway, 'Slow', { requestsPerSecond: 1 });

    const posted = await download(slow.apiKey, '', { method: 'POST' });
    expect([posted.response.status, JSON.parse(posted.text)]).toEqual([405, { error: 'use GET' }]);

    const unknown = await download('og_not-a-key', '');
    expect([unknown.response.status, JSON.parse(unknown.text)]).toEqual([401, { error: 'The API key is unknown or has been revoked.' }]);

    const badDate = await download(slow.apiKey, '?from=yesterday');
    expect(badDate.response.status).toBe(400);
    expect(JSON.parse(badDate.text)).toMatchObject({ error: 'from and to must be ISO 8601 date-times', issues: [expect.anything()] });

    const foreign = await download(slow.apiKey, `?tenantId=${encodeURIComponent(slow.apiKey)}`);
    expect([foreign.response.status, JSON.parse(foreign.text)]).toEqual([403, { error: 'tenantId is for the admin key' }]);

    // A burst of twice the rate, then 429 with Retry-After: an export counts as a request.
    let limited: Awaited<ReturnType<typeof download>> | null = null;
    for (let i = 0; i < 5 && limited === null; i += 1) {
      const attempt = await download(slow.apiKey, MARCH);
      if (attempt.response.status === 429) limited = attempt;
    }
    expect(limited?.response.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(JSON.parse(limited?.text ?? '{}')).toEqual({ error: expect.stringMatching(/^Too many requests: the limit is 1 per second/) });
  });
});
