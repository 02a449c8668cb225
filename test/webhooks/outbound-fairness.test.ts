import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { waitFor } from '../reliability/support.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';

const CREATE = `mutation ($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }`;
const TEST = 'mutation ($id: ID!) { sendTestWebhook(endpointId: $id) { id } }';
const MANY_TESTS = `mutation ($id: ID!) { ${Array.from({ length: 30 }, (_, i) => `t${i}: sendTestWebhook(endpointId: $id) { id }`).join(' ')} }`;

let gateway: TestGateway;
// A receiver that reads each request and never answers: every attempt to it lasts the whole timeout.
const silent = createServer(() => {});
let open = 0;
let mostOpen = 0;
silent.on('request', (req) => {
  open += 1;
  mostOpen = Math.max(mostOpen, open);
  req.socket.once('close', () => {
    open -= 1;
  });
});

beforeAll(async () => {
  // Attempts to the silent receiver outlive the test; rate limits off so that one tenant queues plenty.
  gateway = await startGateway({ env: { WEBHOOK_TIMEOUT_MS: '60000', RATE_LIMIT_REQUESTS_PER_SECOND: '0' } });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  silent.closeAllConnections();
  await gateway?.stop();
  silent.close();
}, 60_000);

describe('outbound webhooks: one tenant cannot hold everyone up', () => {
  it("a receiver that never answers holds a few attempts, and another tenant's delivery arrives meanwhile", async () => {
    const a = await createTenant(gateway, 'Patient');
    const b = await createTenant(gateway, 'Silent');
    const receiver = await startWebhookReceiver();
    const endpointOf = async (key: string, url: string) =>
      expectData(
        await gateway.graphql<{ createWebhookEndpoint: { endpoint: { id: string } } }>(
          CREATE,
          { input: { url, events: ['TASK_UPDATED'] } },
          key,
        ),
      ).createWebhookEndpoint.endpoint.id;
    const silentEndpoint = await endpointOf(b.apiKey, `http://127.0.0.1:${(silent.address() as AddressInfo).port}/hook`);
    // First three attempts in the air (below the cap of 4), then more: the next lease may add only one.
    const THREE = `mutation ($id: ID!) { t0: sendTestWebhook(endpointId: $id) { id } t1: sendTestWebhook(endpointId: $id) { id } t2: sendTestWebhook(endpointId: $id) { id } }`;
    expectData(await gateway.graphql(THREE, { id: silentEndpoint }, b.apiKey));
    await waitFor('three attempts at the silent receiver', () => open === 3, { timeoutMs: 10_000 });
    // 150 deliveries to the silent receiver: more than an instance has room for in the air.
    for (let i = 0; i < 5; i += 1) expectData(await gateway.graphql(MANY_TESTS, { id: silentEndpoint }, b.apiKey));
    const patientEndpoint = await endpointOf(a.apiKey, receiver.url);
    expectData(await gateway.graphql(TEST, { id: patientEndpoint }, a.apiKey));
    await receiver.waitUntil((all) => all.length === 1, 20_000);
    expect(mostOpen).toBeGreaterThan(0);
    expect(mostOpen).toBeLessThanOrEqual(4);
    await receiver.close();
  }, 60_000);

  it('a tenant may have at most 20 endpoints', async () => {
    const tenant = await createTenant(gateway, 'Many endpoints');
    const receiver = await startWebhookReceiver();
    const create = () => gateway.graphql(CREATE, { input: { url: receiver.url, events: ['TASK_UPDATED'] } }, tenant.apiKey);
    const answers = await Promise.all(Array.from({ length: 25 }, create));
    expect(answers.filter((answer) => answer.body.errors === undefined)).toHaveLength(20);
    const refused = answers.filter((answer) => answer.body.errors !== undefined);
    expect(refused).toHaveLength(5);
    for (const answer of refused) expect(answer.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    await receiver.close();
  });
});
