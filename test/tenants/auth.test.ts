import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

const CREATE_TENANT = `mutation ($input: CreateTenantInput!) {
  createTenant(input: $input) { apiKey tenant { id name monthlyVideoSecondsLimit maxConcurrentTasks } }
}`;
const VIEWER = '{ viewer { tenant { id name } } }';

type CreatedTenant = { createTenant: { apiKey: string; tenant: { id: string; name: string } } };

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  await gateway?.stop();
});

async function createTenant(name: string) {
  return expectData(await gateway.graphql<CreatedTenant>(CREATE_TENANT, { input: { name } }), CREATE_TENANT).createTenant;
}

describe('API keys and tenants', () => {
  it('createTenant returns a key that answers viewer { tenant }', async () => {
    const created = await createTenant('Acme Studio');
    expect(created.apiKey).toMatch(/^og_[A-Za-z0-9_-]{43}$/);
    const viewer = expectData(await gateway.graphql(VIEWER, {}, created.apiKey), VIEWER);
    expect(viewer).toEqual({ viewer: { tenant: { id: created.tenant.id, name: 'Acme Studio' } } });
  });

  it.each([
    ['no key', null],
    ['a wrong key', 'og_not-a-real-key'],
  ])('refuses %s with HTTP 401, a GraphQL error body and no data', async (_label, token) => {
    const response = await gateway.graphql(VIEWER, {}, token);
    expect(response.status).toBe(401);
    expect(response.body.data).toBeUndefined();
    expect(response.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('refuses a revoked key with 401, and only that key', async () => {
    const created = await createTenant('Revoker');
    const second = expectData(
      await gateway.graphql<{ createApiKey: { id: string; apiKey: string } }>(
        'mutation ($t: ID!) { createApiKey(tenantId: $t) { id apiKey } }',
        { t: created.tenant.id },
      ),
    ).createApiKey;
    expect(second.apiKey).not.toBe(created.apiKey);
    expect(expectData(await gateway.graphql(VIEWER, {}, second.apiKey))).toMatchObject({
      viewer: { tenant: { name: 'Revoker' } },
    });

    const revoke = 'mutation ($id: ID!) { revokeApiKey(id: $id) }';
    expect(expectData(await gateway.graphql(revoke, { id: second.id }))).toEqual({ revokeApiKey: true });
    expect(expectData(await gateway.graphql(revoke, { id: second.id }))).toEqual({ revokeApiKey: false });

    const refused = await gateway.graphql(VIEWER, {}, second.apiKey);
    expect(refused.status).toBe(401);
    expect(refused.body.data).toBeUndefined();
    // The tenant's first key is untouched.
    expect(expectData(await gateway.graphql(VIEWER, {}, created.apiKey))).toMatchObject({
      viewer: { tenant: { name: 'Revoker' } },
    });
  });

  it('refuses admin mutations to a tenant key with FORBIDDEN', async () => {
    const created = await createTenant('Intruder');
    for (const [query, variables] of [
      [CREATE_TENANT, { input: { name: 'sneaky' } }],
      ['mutation ($t: ID!) { createApiKey(tenantId: $t) { apiKey } }', { t: created.tenant.id }],
      ['{ tenants { edges { node { name } } } }', {}],
    ] as const) {
      const response = await gateway.graphql(query, variables, created.apiKey);
      expect(response.status, query).toBe(200);
      expect(response.body.errors?.[0]?.extensions?.code, query).toBe('FORBIDDEN');
      expect(JSON.stringify(response.body.data ?? null), query).not.toContain('sneaky');
    }
  });

  it('rejects a blank tenant name with a typed input error and creates nothing', async () => {
    const before = expectData(await gateway.graphql<{ tenants: { edges: unknown[] } }>('{ tenants(first: 100) { edges { cursor } } }'));
    const response = await gateway.graphql(CREATE_TENANT, { input: { name: '   ' } });
    expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const after = expectData(await gateway.graphql<{ tenants: { edges: unknown[] } }>('{ tenants(first: 100) { edges { cursor } } }'));
    expect(after.tenants.edges).toHaveLength(before.tenants.edges.length);
  });

  it('node(id) shows a tenant only to itself and to the admin', async () => {
    const a = await createTenant('Node A');
    const b = await createTenant('Node B');
    const query = 'query ($id: ID!) { node(id: $id) { id ... on Tenant { name } } }';
    expect(expectData(await gateway.graphql(query, { id: a.tenant.id }, a.apiKey))).toEqual({
      node: { id: a.tenant.id, name: 'Node A' },
    });
    expect(expectData(await gateway.graphql(query, { id: a.tenant.id }, b.apiKey))).toEqual({ node: null });
    expect(expectData(await gateway.graphql(query, { id: a.tenant.id }))).toEqual({
      node: { id: a.tenant.id, name: 'Node A' },
    });
  });

  it('lists tenants oldest first, page by page, and updates limits', async () => {
    await createTenant('Page 1');
    await createTenant('Page 2');
    const query =
      'query ($after: String) { tenants(first: 2, after: $after) { edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }';
    type Page = {
      tenants: { edges: { node: { id: string; name: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
    };
    const seen: string[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 50; pages += 1) {
      const page: Page = expectData(await gateway.graphql<Page>(query, { after }));
      seen.push(...page.tenants.edges.map((edge) => edge.node.name));
      if (!page.tenants.pageInfo.hasNextPage) break;
      after = page.tenants.pageInfo.endCursor;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.indexOf('Page 1')).toBeLessThan(seen.indexOf('Page 2'));

    const target = await createTenant('Limited');
    const update = `mutation ($input: UpdateTenantLimitsInput!) {
      updateTenantLimits(input: $input) { name monthlyVideoSecondsLimit maxConcurrentTasks } }`;
    expect(expectData(await gateway.graphql(update, { input: { tenantId: target.tenant.id, monthlyVideoSecondsLimit: 50 } }))).toEqual({
      updateTenantLimits: { name: 'Limited', monthlyVideoSecondsLimit: 50, maxConcurrentTasks: null },
    });
    expect(expectData(await gateway.graphql(update, { input: { tenantId: target.tenant.id, maxConcurrentTasks: 2 } }))).toEqual({
      updateTenantLimits: { name: 'Limited', monthlyVideoSecondsLimit: 50, maxConcurrentTasks: 2 },
    });
    const negative = await gateway.graphql(update, { input: { tenantId: target.tenant.id, maxConcurrentTasks: -1 } });
    expect(negative.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('answers /healthz and /readyz', async () => {
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });
});
