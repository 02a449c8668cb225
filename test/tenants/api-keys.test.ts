import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

type Key = { id: string; prefix: string; createdAt: string; lastUsedAt: string | null; revokedAt: string | null };
const KEYS = 'query ($t: ID!) { apiKeys(tenantId: $t) { id prefix createdAt lastUsedAt revokedAt } }';

describe('API keys for the admin', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startGateway();
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it("createTenant returns its first key's id, so the first key can be revoked; apiKeys lists keys, never the secret", async () => {
    const created = expectData(
      await gateway.graphql<{ createTenant: { apiKey: string; apiKeyId: string; tenant: { id: string } } }>(
        'mutation { createTenant(input: { name: "Keyed" }) { apiKey apiKeyId tenant { id } } }',
      ),
    ).createTenant;
    const tenantId = created.tenant.id;
    expectData(await gateway.graphql('{ viewer { tenant { name } } }', {}, created.apiKey));
    const second = expectData(
      await gateway.graphql<{ createApiKey: { id: string; apiKey: string } }>(
        'mutation ($t: ID!) { createApiKey(tenantId: $t) { id apiKey } }',
        {
          t: tenantId,
        },
      ),
    ).createApiKey;

    const listed = expectData(await gateway.graphql<{ apiKeys: Key[] }>(KEYS, { t: tenantId })).apiKeys;
    expect(listed.map((key) => key.id)).toEqual([created.apiKeyId, second.id]);
    expect(created.apiKey.startsWith(listed[0]!.prefix)).toBe(true);
    expect(listed[0]!.lastUsedAt).not.toBeNull();
    expect(JSON.stringify(listed)).not.toContain(created.apiKey);
    expect(JSON.stringify(listed)).not.toContain(second.apiKey);

    expect(expectData(await gateway.graphql('mutation ($id: ID!) { revokeApiKey(id: $id) }', { id: created.apiKeyId }))).toEqual({
      revokeApiKey: true,
    });
    expect((await gateway.graphql('{ viewer { tenant { name } } }', {}, created.apiKey)).status).toBe(401);
    const after = expectData(await gateway.graphql<{ apiKeys: Key[] }>(KEYS, { t: tenantId })).apiKeys;
    expect(after[0]!.revokedAt).not.toBeNull();
    expect(after[1]!.revokedAt).toBeNull();
  });

  it('a tenant may not list keys; an unknown tenant is NOT_FOUND', async () => {
    const tenant = await createTenant(gateway, 'Curious');
    const refused = await gateway.graphql(KEYS, { t: tenant.id }, tenant.apiKey);
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const unknown = await gateway.graphql(KEYS, { t: 'VGVuYW50OjAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMA' });
    expect(unknown.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });
});
