import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSandboxTenantOnce } from '../../src/tenants/sandbox.ts';
import { createEmptyPostgresDatabase, createTestDatabase, POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';
import { listeningUrl, spawnGateway } from '../support/process.ts';
import type { GatewayProcess } from '../support/process.ts';

const ADMIN = 'sandbox-test-admin-key-0123456789';
const KEY = /\bog_[A-Za-z0-9_-]{20,}/;
/** Any line of the sandbox's: the banner, its log line, or the later starts' reminder. */
const SANDBOX_OUTPUT = /[Ss]andbox (tenant|key)/;
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
  const dir = mkdtempSync(join(tmpdir(), 'omni-gateway-first-start-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type Viewer = { viewer: { tenant: { name: string } } };

async function graphql<T>(url: string, token: string, query: string): Promise<{ status: number; body: { data?: T; errors?: unknown[] } }> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query }),
  });
  return { status: response.status, body: (await response.json()) as { data?: T; errors?: unknown[] } };
}

async function tenantNames(url: string): Promise<string[]> {
  type Tenants = { tenants: { edges: { node: { name: string } }[] } };
  const response = await graphql<Tenants>(url, ADMIN, '{ tenants(first: 50) { edges { node { name } } } }');
  return (response.body.data?.tenants.edges ?? []).map((edge) => edge.node.name);
}

describe('the sandbox tenant of a first start (real process)', () => {
  it('is created on the first start with the simulator and PGlite, its key printed once with the GraphiQL URL, never again', async () => {
    const dataDir = tempDataDir();
    const first = start({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN });
    const url = await listeningUrl(first);
    const banner = await first.waitForLine(KEY);
    const apiKey = KEY.exec(banner)?.[0] ?? '';
    await first.waitForLine(/"msg":"sandbox tenant created"/);
    expect(first.lines.join('\n')).toContain(`GraphiQL: ${url}/graphql`);
    const viewer = await graphql<Viewer>(url, apiKey, '{ viewer { tenant { name } } }');
    expect(viewer, JSON.stringify(viewer)).toEqual({ status: 200, body: { data: { viewer: { tenant: { name: 'Sandbox' } } } } });
    // The key itself never reaches a log line: only the plain banner carries it.
    const logLines = first.lines.filter((line) => line.startsWith('{'));
    expect(logLines.filter((line) => line.includes(apiKey))).toEqual([]);
    expect(await first.kill('SIGTERM')).toBe(0);

    const second = start({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN });
    const secondUrl = await listeningUrl(second);
    await second.waitForLine(/the sandbox key was printed at the first start/);
    expect(second.lines.filter((line) => KEY.test(line))).toEqual([]);
    expect(await tenantNames(secondUrl)).toEqual(['Sandbox']);
    expect((await graphql<Viewer>(secondUrl, apiKey, '{ viewer { tenant { name } } }')).body.data?.viewer.tenant.name).toBe('Sandbox');
  });

  it('is never made when COMETAPI_KEY is set (with PUBLIC_BASE_URL, which it requires)', async () => {
    const gateway = start({
      DATA_DIR: tempDataDir(),
      ADMIN_API_KEY: ADMIN,
      COMETAPI_KEY: 'sk-not-used-by-this-test',
      COMETAPI_BASE_URL: 'http://127.0.0.1:9',
      PUBLIC_BASE_URL: 'http://127.0.0.1:9',
    });
    const url = await listeningUrl(gateway);
    expect(gateway.lines.filter((line) => KEY.test(line) || SANDBOX_OUTPUT.test(line))).toEqual([]);
    expect(await tenantNames(url)).toEqual([]);
  });

  it.skipIf(serverUrl === null)('is never made on PostgreSQL (DATABASE_URL)', POSTGRES_ONLY, async () => {
    const database = await createEmptyPostgresDatabase();
    if (database === null) return;
    cleanups.push(() => database.drop());
    const gateway = start({ DATABASE_URL: database.url, ADMIN_API_KEY: ADMIN });
    const url = await listeningUrl(gateway);
    expect(gateway.lines.filter((line) => KEY.test(line) || SANDBOX_OUTPUT.test(line))).toEqual([]);
    expect(await tenantNames(url)).toEqual([]);
  });
});

describe('createSandboxTenantOnce', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(() => database.drop());

  it('of several concurrent calls on one database, exactly one creates the tenant', async () => {
    const results = await Promise.all([1, 2, 3, 4].map(() => createSandboxTenantOnce(database.db)));
    const created = results.filter((result) => result !== null);
    expect(created).toHaveLength(1);
    expect(await createSandboxTenantOnce(database.db)).toBeNull();
    const rows = await database.db.query.tenants.findMany();
    expect(rows.map((row) => [row.id, row.name])).toEqual([[created[0]?.tenantId, 'Sandbox']]);
    const setting = await database.db.query.settings.findFirst({ where: (s, { eq }) => eq(s.key, 'sandbox_tenant') });
    expect(setting?.value).toBe(created[0]?.tenantId);
  });
});
