import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

const VIEWER = '{ viewer { tenant { name } } }';

describe('query limits', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    gateway = await startGateway();
    tenant = await createTenant(gateway, 'Limited');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  async function refused(query: string, limit: string) {
    const response = await gateway.graphql(query, {}, tenant.apiKey);
    expect(response.status, query.slice(0, 200)).toBe(400);
    expect(response.body.data ?? null).toBeNull();
    const error = response.body.errors?.[0];
    expect(error?.extensions?.code).toBe('QUERY_LIMIT');
    expect(error?.extensions?.limit).toBe(limit);
    expect(error?.message).toContain(`its ${limit}`);
    // The server keeps serving.
    expect(expectData(await gateway.graphql(VIEWER, {}, tenant.apiKey))).toEqual({ viewer: { tenant: { name: 'Limited' } } });
  }

  it('refuses a 50-deep query (introspection counts)', async () => {
    const query = `{ __schema { queryType { fields { type ${'{ ofType '.repeat(46)}{ name }${' }'.repeat(46)} } } } }`;
    await refused(query, 'depth');
  });

  it('counts depth through fragments', async () => {
    const fragments = Array.from({ length: 12 }, (_, i) => `fragment F${i} on __Type { ofType { ...F${i + 1} } }`).join('\n');
    await refused(`{ __schema { queryType { ...F0 } } }\n${fragments}\nfragment F12 on __Type { name }`, 'depth');
  });

  it('counts nested inline fragments as levels: 50 of them are refused', async () => {
    const query = `{ node(id: "x") { ${'... on Node { '.repeat(50)}id${' }'.repeat(50)} } }`;
    await refused(query, 'depth');
  });

  it('counts each fragment spread as a level', async () => {
    // 4 fields deep, but 9 levels with the spreads and inline fragments between them: refused at a limit of 8.
    const strict = await startGateway({ env: { QUERY_MAX_DEPTH: '8' } });
    try {
      const key = (await createTenant(strict, 'Strict')).apiKey;
      const query =
        '{ ...A } fragment A on Query { viewer { ...B } } fragment B on Viewer { ... on Viewer { tenant { ... on Tenant { usage { ... { units } } } } } }';
      const response = await strict.graphql(query, {}, key);
      expect(response.status).toBe(400);
      expect(response.body.errors?.[0]?.extensions?.limit).toBe('depth');
      expect(response.body.errors?.[0]?.message).toContain('its depth (9)');
    } finally {
      await strict.stop();
    }
  });

  it('refuses a 5,000-alias query (its length is checked first, before parsing)', async () => {
    const query = `{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: __typename`).join(' ')} }`;
    await refused(query, 'length');
  });

  it('refuses a document over the token limit', async () => {
    await refused(`{ ${'__typename '.repeat(2100)}}`, 'tokens');
  });

  it('refuses 31 aliases, fragments expanded', async () => {
    await refused(
      `{ ...A ...A } fragment A on Query { ${Array.from({ length: 16 }, (_, i) => `a${i}: __typename`).join(' ')} }`,
      'aliases',
    );
  });

  it('refuses a 100 KB query string', async () => {
    await refused(`{ __typename ${' '.repeat(100 * 1024)} }`, 'length');
  });

  it('refuses too many directives and too much cost', async () => {
    await refused(`{ ${Array.from({ length: 26 }, () => '__typename @include(if: true) @skip(if: false)').join(' ')} }`, 'directives');
    // Each page costs 1 + 100 × (edges 1 + node 1 + 3 scalars + 2 lists of 2) = 901; six of them exceed 5,000.
    const page = (i: number) =>
      `t${i}: omniTasks(first: 100) { edges { node { id prompt status videos { url } referenceImages { url } } } }`;
    await refused(`{ ${Array.from({ length: 6 }, (_, i) => page(i)).join(' ')} }`, 'cost');
    expect((await gateway.graphql(`{ ${Array.from({ length: 5 }, (_, i) => page(i)).join(' ')} }`, {}, tenant.apiKey)).status).toBe(200);
  });

  it('hides field suggestions', async () => {
    const response = await gateway.graphql('{ viewr { tenant { name } } }', {}, tenant.apiKey);
    expect(response.status).toBe(400);
    expect(response.body.errors?.[0]?.message).toBe('Cannot query field "viewr" on type "Query".');
  });
});

describe('per-tenant rate limits', () => {
  it('a tenant over its limit gets 429 and RateLimitedError while another tenant is unaffected', async () => {
    const gateway = await startGateway({ env: { RATE_LIMIT_REQUESTS_PER_SECOND: '2', RATE_LIMIT_CREATES_PER_MINUTE: '6' } });
    try {
      const noisy = await createTenant(gateway, 'Noisy');
      const quiet = await createTenant(gateway, 'Quiet');
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 12; i += 1) {
        const response = await fetch(`${gateway.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${noisy.apiKey}` },
          body: JSON.stringify({ query: VIEWER }),
        });
        statuses.push(response.status);
        if (response.status === 429) {
          retryAfter = response.headers.get('retry-after');
          const body = (await response.json()) as { data?: unknown; errors: { extensions: { code: string } }[] };
          expect(body.data).toBeUndefined();
          expect(body.errors[0]?.extensions.code).toBe('RATE_LIMITED');
        } else await response.text();
      }
      expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(0);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      expect(expectData(await gateway.graphql(VIEWER, {}, quiet.apiKey))).toEqual({ viewer: { tenant: { name: 'Quiet' } } });

      // createOmniVideo has its own, slower rate: the second create within a second is refused as data.
      const creates = [];
      for (let i = 0; i < 2; i += 1) {
        creates.push(
          expectData(
            await gateway.graphql<{ createOmniVideo: { __typename: string; retryAfterSeconds?: number } }>(
              'mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { __typename ... on RateLimitedError { message retryAfterSeconds } } }',
              { input: TEXT_TO_VIDEO },
              quiet.apiKey,
            ),
          ).createOmniVideo,
        );
      }
      expect(creates.map((c) => c.__typename)).toEqual(['CreateOmniVideoSuccess', 'RateLimitedError']);
      expect(creates[1]?.retryAfterSeconds).toBeGreaterThanOrEqual(1);

      // A tenant's own limit overrides the default.
      const update = 'mutation ($input: UpdateTenantLimitsInput!) { updateTenantLimits(input: $input) { requestsPerSecond } }';
      expect(expectData(await gateway.graphql(update, { input: { tenantId: noisy.id, requestsPerSecond: 1000 } }))).toEqual({
        updateTenantLimits: { requestsPerSecond: 1000 },
      });
      const after = await Promise.all(Array.from({ length: 20 }, () => gateway.graphql(VIEWER, {}, noisy.apiKey)));
      expect(after.every((response) => response.status === 200)).toBe(true);
    } finally {
      await gateway.stop();
    }
  });
});

describe('transport limits', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    gateway = await startGateway({
      env: { WS_CONNECTION_INIT_TIMEOUT_MS: '200', MAX_REQUEST_BYTES: String(1024 * 1024), CORS_ORIGINS: 'https://app.example' },
    });
    tenant = await createTenant(gateway, 'Transport');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  function openSocket(): Promise<WebSocket> {
    const socket = new WebSocket(`${gateway.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(socket));
      socket.once('error', reject);
    });
  }
  const closeCode = (socket: WebSocket) => new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));

  it('closes a WebSocket that never sends connection_init (4408)', async () => {
    const socket = await openSocket();
    expect(await closeCode(socket)).toBe(4408);
  });

  it('refuses a 2 MB WebSocket message (1009) and keeps serving', async () => {
    const socket = await openSocket();
    const closed = closeCode(socket);
    socket.send(
      JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${tenant.apiKey}`, pad: 'x'.repeat(2 * 1024 * 1024) } }),
    );
    expect(await closed).toBe(1009);
    expect(expectData(await gateway.graphql(VIEWER, {}, tenant.apiKey))).toBeTruthy();
  });

  it('refuses a request body over MAX_REQUEST_BYTES with 413', async () => {
    const response = await fetch(`${gateway.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.apiKey}` },
      body: JSON.stringify({ query: VIEWER, variables: { pad: 'x'.repeat(2 * 1024 * 1024) } }),
    });
    expect(response.status).toBe(413);
  });

  it('refuses a chunked body without a Content-Length with 411', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.apiKey}`, 'transfer-encoding': 'chunked' },
      });
      req.on('response', (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(JSON.stringify({ query: VIEWER }));
      req.end();
    });
    expect(status).toBe(411);
  });

  it('answers CORS preflights for allowed origins only', async () => {
    const preflight = (origin: string) =>
      fetch(`${gateway.url}/graphql`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
      });
    expect((await preflight('https://app.example')).headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect((await preflight('https://evil.example')).headers.get('access-control-allow-origin')).not.toBe('https://evil.example');
  });
});

describe('persisted operations mode', () => {
  it('accepts only the operations listed in the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'persisted-'));
    const file = join(dir, 'operations.json');
    writeFileSync(file, JSON.stringify({ viewerName: VIEWER }));
    const gateway = await startGateway({ env: { PERSISTED_OPERATIONS_FILE: file } });
    try {
      const tenant = await createTenant(gateway, 'Persisted').catch(() => null);
      // Even the admin's createTenant is not listed: the mode refuses it.
      expect(tenant).toBeNull();
      const post = (body: unknown) =>
        fetch(`${gateway.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer test-admin-key-0123456789abcdef' },
          body: JSON.stringify(body),
        }).then(async (response) => ({ status: response.status, body: await response.json() }));
      const arbitrary = await post({ query: '{ __typename }' });
      expect(JSON.stringify(arbitrary.body)).toContain('PersistedQueryOnly');
      const listed = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: 'viewerName' } } });
      // The admin has no tenant: the listed operation runs and is refused by scope, not by the mode.
      expect(JSON.stringify(listed.body)).toContain('FORBIDDEN');
    } finally {
      await gateway.stop();
    }
  });
});

describe('a create with the simulator still works under the default limits', () => {
  it('creates a task', async () => {
    const gateway = await startGateway({ env: { RATE_LIMIT_REQUESTS_PER_SECOND: '20', RATE_LIMIT_CREATES_PER_MINUTE: '60' } });
    try {
      const tenant = await createTenant(gateway, 'Defaults');
      // Sent upstream: SUBMITTED, or PROCESSING when the simulator's callback (50 ms on) came first.
      expect(['SUBMITTED', 'PROCESSING']).toContain((await createTask(gateway, tenant, TEXT_TO_VIDEO)).status);
    } finally {
      await gateway.stop();
    }
  });
});
