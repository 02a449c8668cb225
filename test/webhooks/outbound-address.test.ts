import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';

/** What the injected resolver answers for each name; a test changes it to play a DNS rebinding. */
const dns = new Map<string, string[]>();
const lookups: string[] = [];

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  gateway = await startGateway({
    env: { ALLOW_PRIVATE_URLS: 'false', WEBHOOK_RETRY_SCHEDULE: '0' },
    webhookResolver: async (hostname) => {
      lookups.push(hostname);
      const addresses = dns.get(hostname);
      if (addresses === undefined) throw Object.assign(new Error(`no such host ${hostname}`), { code: 'ENOTFOUND' });
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    },
  });
  tenant = await createTenant(gateway, 'Careful');
});
afterAll(async () => {
  await gateway?.stop();
});

const CREATE = `mutation ($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id url } } }`;

describe('outbound webhook addresses (ALLOW_PRIVATE_URLS=false)', () => {
  it('refuses non-http(s) URLs and private addresses at creation, as literals or by DNS, without creating anything', async () => {
    dns.set('internal.example.test', ['10.1.2.3']);
    dns.set('mixed.example.test', ['93.184.216.34', '::1']);
    dns.set('localhost', ['127.0.0.1']);
    const refused = [
      'ftp://example.com/hooks',
      'http://127.0.0.1:8080/hooks',
      'http://[::1]/hooks',
      'http://[::ffff:169.254.169.254]/latest/meta-data',
      'https://10.0.0.7/hooks',
      'http://localhost:9000/hooks',
      'https://internal.example.test/hooks',
      'https://mixed.example.test/hooks',
      'https://unknown.example.test/hooks',
      'https://user:pass@93.184.216.34/hooks',
    ];
    for (const url of refused) {
      const response = await gateway.graphql(CREATE, { input: { url, events: ['TASK_UPDATED'] } }, tenant.apiKey);
      expect(response.body.data ?? null, url).toBeNull();
      expect(response.body.errors?.[0]?.extensions?.code, url).toBe('BAD_USER_INPUT');
    }
    const list = 'query { webhookEndpoints { edges { node { id } } } }';
    expect(expectData(await gateway.graphql(list, {}, tenant.apiKey), list)).toEqual({ webhookEndpoints: { edges: [] } });
  });

  it('checks the address actually connected to at delivery: a name that turns private is refused, and nothing reaches it', async () => {
    const receiver = await startWebhookReceiver();
    try {
      dns.set('hooks.example.test', ['93.184.216.34']);
      const url = `http://hooks.example.test:${receiver.port}/hooks`;
      const created = expectData(
        await gateway.graphql<{ createWebhookEndpoint: { endpoint: { id: string } } }>(
          CREATE,
          { input: { url, events: ['TASK_UPDATED'] } },
          tenant.apiKey,
        ),
        CREATE,
      ).createWebhookEndpoint.endpoint;
      // The name now answers with the loopback address the receiver listens on (DNS rebinding).
      dns.set('hooks.example.test', ['127.0.0.1']);
      lookups.length = 0;
      const send = 'mutation ($id: ID!) { sendTestWebhook(endpointId: $id) { id } }';
      const { id } = expectData(
        await gateway.graphql<{ sendTestWebhook: { id: string } }>(send, { id: created.id }, tenant.apiKey),
        send,
      ).sendTestWebhook;
      const query = 'query ($id: ID!) { node(id: $id) { ... on WebhookDelivery { status attempts { httpStatus error } } } }';
      await expect
        .poll(async () => expectData(await gateway.graphql<{ node: { status: string } }>(query, { id }, tenant.apiKey), query).node.status)
        .toBe('FAILED');
      const delivery = expectData(
        await gateway.graphql<{ node: { attempts: { httpStatus: number | null; error: string }[] } }>(query, { id }, tenant.apiKey),
        query,
      ).node;
      expect(delivery.attempts).toHaveLength(1);
      expect(delivery.attempts[0]?.httpStatus).toBeNull();
      expect(delivery.attempts[0]?.error).toMatch(/^refused: hooks\.example\.test resolved to an address that is not public$/);
      expect(lookups).toContain('hooks.example.test');
      expect(receiver.received).toHaveLength(0);
    } finally {
      await receiver.close();
    }
  });
});
