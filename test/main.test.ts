import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { migrationsFolder } from '../src/db/database.ts';
import { createEmptyPostgresDatabase, POSTGRES_ONLY, serverUrl } from './support/database.ts';
import { listeningUrl, spawnGateway } from './support/process.ts';
import type { GatewayProcess } from './support/process.ts';

const ADMIN = 'process-test-admin-key-0123456789';
const running: GatewayProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((gateway) => gateway.kill('SIGKILL')));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function start(env: Record<string, string>): GatewayProcess {
  const gateway = spawnGateway({ PORT: '0', HOST: '127.0.0.1', ...env });
  running.push(gateway);
  return gateway;
}

function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'omni-gateway-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function graphql(url: string, token: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, body: (await response.json()) as { data?: any; errors?: unknown[] } };
}

describe('the gateway process', () => {
  it('starts on embedded PGlite, says where its data lives, is ready, and stops on SIGTERM', async () => {
    const dataDir = tempDataDir();
    const gateway = start({ DATA_DIR: dataDir });
    const line = await gateway.waitForLine(/embedded PGlite/);
    expect(line).toContain(join(dataDir, 'pglite'));
    const url = await listeningUrl(gateway);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect(await gateway.kill('SIGTERM')).toBe(0);
    expect(gateway.lines.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
  });

  it('keeps tenants and keys across a restart on the same DATA_DIR', async () => {
    const dataDir = tempDataDir();
    const first = start({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN });
    const firstUrl = await listeningUrl(first);
    const created = await graphql(firstUrl, ADMIN, 'mutation { createTenant(input: { name: "Durable" }) { apiKey } }');
    const apiKey = created.body.data.createTenant.apiKey as string;
    expect(await first.kill('SIGTERM')).toBe(0);

    const second = start({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN });
    const secondUrl = await listeningUrl(second);
    const viewer = await graphql(secondUrl, apiKey, '{ viewer { tenant { name } } }');
    expect(viewer).toEqual({ status: 200, body: { data: { viewer: { tenant: { name: 'Durable' } } } } });
  });

  it('exits non-zero naming every bad variable', async () => {
    const gateway = start({ PORT: 'abc', DATABASE_URL: 'mysql://x' });
    expect(await gateway.exited).not.toBe(0);
    const output = gateway.lines.join('\n');
    expect(output).toContain('PORT');
    expect(output).toContain('DATABASE_URL');
  });

  it.skipIf(serverUrl === null)(
    'two instances started at once on one PostgreSQL database both become ready; migrations run once',
    POSTGRES_ONLY,
    async () => {
      const database = await createEmptyPostgresDatabase();
      if (database === null) return;
      cleanups.push(() => database.drop());
      const gateways = [start({ DATABASE_URL: database.url }), start({ DATABASE_URL: database.url })];
      const urls = await Promise.all(gateways.map((gateway) => listeningUrl(gateway)));
      for (const url of urls) expect((await fetch(`${url}/readyz`)).status).toBe(200);

      const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta/_journal.json'), 'utf8')) as {
        entries: unknown[];
      };
      const client = postgres(database.url, { max: 1 });
      try {
        const rows = await client`select hash from drizzle.__drizzle_migrations`;
        expect(rows).toHaveLength(journal.entries.length);
        expect(new Set(rows.map((row) => row.hash)).size).toBe(journal.entries.length);
      } finally {
        await client.end();
      }
      await Promise.all(gateways.map(async (gateway) => expect(await gateway.kill('SIGTERM')).toBe(0)));
    },
  );
});
