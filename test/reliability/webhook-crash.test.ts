import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { connectDatabase, queryRows } from '../../src/db/database.ts';
import { createEmptyPostgresDatabase, serverUrl } from '../support/database.ts';
import { freePort, spawnGateway } from '../support/process.ts';
import type { GatewayProcess } from '../support/process.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';
import { CREATE, createTenantAt, gatewayProcessEnv, graphqlAt, startUpstream, waitFor } from './support.ts';

/*
 * Issue 20, acceptance 3: the gateway is killed (SIGKILL) while webhook deliveries are due (the
 * receiver has been failing them) and while changes may still wait to be turned into deliveries.
 * After a restart on the same store every event is delivered, and the log shows one success each.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Store = { env: Record<string, string>; dataDir: string; databaseUrl: string | null };

async function freshStore(): Promise<Store> {
  const dataDir = mkdtempSync(join(tmpdir(), 'omni-webhook-crash-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const address = { PORT: String(port), PUBLIC_BASE_URL: `http://127.0.0.1:${port}` };
  if (serverUrl === null) return { env: { DATA_DIR: dataDir, ...address }, dataDir, databaseUrl: null };
  const database = await createEmptyPostgresDatabase();
  if (database === null) throw new Error('unreachable: DATABASE_URL is set');
  cleanups.push(() => database.drop());
  return { env: { DATA_DIR: dataDir, DATABASE_URL: database.url, ...address }, dataDir, databaseUrl: database.url };
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

const TASKS = 4;

/** The URL a started gateway printed; PGlite starts slowly on a busy machine, so it gets a minute. */
async function listening(gateway: GatewayProcess): Promise<string> {
  const line = await gateway.waitForLine(/omni gateway listening/, 60_000);
  return (JSON.parse(line) as { url: string }).url;
}

describe(`a gateway killed with webhook deliveries due (${serverUrl === null ? 'PGlite' : 'PostgreSQL'})`, () => {
  it('delivers every event after the restart, with one success each in the log', async () => {
    const store = await freshStore();
    const upstream = await startUpstream({ delays: { processingMs: 50, finishMs: 150 } });
    cleanups.push(() => upstream.close());
    let up = false;
    const receiver = await startWebhookReceiver(() => (up ? 200 : 503));
    cleanups.push(() => receiver.close());
    const env = {
      ...gatewayProcessEnv(upstream.url),
      ...store.env,
      ALLOW_PRIVATE_URLS: 'true',
      // Retries every second, long enough to still be due after the restart; a short timeout keeps the lease short.
      WEBHOOK_RETRY_SCHEDULE: '0,0.3,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1',
      WEBHOOK_TIMEOUT_MS: '3000',
    };
    const first = spawnGateway(env);
    cleanups.push(() => first.kill('SIGKILL'));
    const firstUrl = await listening(first);
    const tenant = await createTenantAt(firstUrl, 'Crash hooks');
    const created = await graphqlAt(
      firstUrl,
      tenant.apiKey,
      'mutation ($url: String!) { createWebhookEndpoint(input: { url: $url, events: [TASK_UPDATED, TASK_SUCCEEDED] }) { endpoint { id } } }',
      { url: receiver.url },
    );
    const endpointId = created.body?.data?.createWebhookEndpoint?.endpoint?.id as string;
    expect(endpointId, created.text).toBeTruthy();
    for (let i = 0; i < TASKS; i++) {
      const answer = await graphqlAt(firstUrl, tenant.apiKey, CREATE, {
        input: { prompt: `Crash ${i}`, mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 },
      });
      expect(answer.body?.data?.createOmniVideo?.__typename, answer.text).toBe('CreateOmniVideoSuccess');
    }
    // Every task's success event has been tried (and refused) at least once: deliveries are due.
    await receiver.waitUntil(
      (received) => new Set(received.filter((r) => r.json.type === 'task.succeeded').map((r) => r.headers['webhook-id'])).size === TASKS,
      20_000,
    );
    first.child.kill('SIGKILL');
    await first.exited;

    const [due] = await inspect<{ pending: number; total: number }>(
      store,
      sql`select count(*) filter (where status = 'pending')::int as pending, count(*)::int as total from webhook_deliveries`,
    );
    expect(due?.pending).toBeGreaterThan(0);

    up = true;
    const second: GatewayProcess = spawnGateway(env);
    cleanups.push(() => second.kill('SIGKILL'));
    const secondUrl = await listening(second);
    const delivered = () => new Set(receiver.received.filter((r) => r.answered === 200).map((r) => String(r.headers['webhook-id'])));
    // Each task makes versions 1..n (task.updated each) and one task.succeeded. Done when the
    // receiver has a 2xx for each, and the log has recorded them all (an answer the gateway did not
    // get in time is retried, so the receiver may see an id twice: at least once).
    const log = 'query ($id: ID!) { webhookDeliveries(endpointId: $id, first: 100) { edges { node { status } } } }';
    await waitFor(
      'every event delivered with a 2xx and recorded',
      async () => {
        const expected = await graphqlAt(secondUrl, tenant.apiKey, 'query { omniTasks(first: 50) { edges { node { version status } } } }');
        const tasks = (expected.body?.data?.omniTasks?.edges ?? []) as { node: { version: number; status: string } }[];
        if (tasks.length !== TASKS || tasks.some((t) => t.node.status !== 'SUCCEEDED')) return false;
        const events = tasks.reduce((sum, t) => sum + t.node.version + 1, 0);
        if (delivered().size !== events) return false;
        const answer = await graphqlAt(secondUrl, tenant.apiKey, log, { id: endpointId });
        const statuses = ((answer.body?.data?.webhookDeliveries?.edges ?? []) as { node: { status: string } }[]).map((e) => e.node.status);
        return statuses.length === events && statuses.every((status) => status === 'SUCCEEDED');
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    await second.kill('SIGTERM');

    const rows = await inspect<{ event_id: string; status: string; successes: number }>(
      store,
      sql`select event_id, status,
               (select count(*)::int from jsonb_array_elements(attempts) a where (a->>'httpStatus')::int between 200 and 299) as successes
          from webhook_deliveries`,
    );
    expect(rows.length).toBe(delivered().size);
    for (const row of rows) {
      expect(row, JSON.stringify(row)).toMatchObject({ status: 'succeeded', successes: 1 });
      expect(delivered().has(row.event_id)).toBe(true);
    }
  }, 90_000);
});
