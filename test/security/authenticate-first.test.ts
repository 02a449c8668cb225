import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.ts';
import { createTenant } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

const VIEWER = '{ viewer { tenant { name } } }';

/**
 * Starts a POST /graphql that declares `declared` bytes and sends only its first chunk; the rest
 * is never sent unless the test asks. Resolves with the answer and how many bytes went out first.
 */
function slowPost(url: string, headers: Record<string, string>, declared: number) {
  const req = request(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': String(declared), ...headers },
  });
  const first = Buffer.from(`{"query":"{__typename}","variables":{"a":[${'{},'.repeat(20_000)}`);
  req.write(first);
  const answered = new Promise<{ response: IncomingMessage; body: string; sentBeforeAnswer: number }>((resolve, reject) => {
    req.once('response', (response) => {
      const sentBeforeAnswer = req.socket?.bytesWritten ?? -1;
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.once('end', () => resolve({ response, body, sentBeforeAnswer }));
    });
    req.once('error', reject);
  });
  const closed = new Promise<void>((resolve) => req.once('close', () => resolve()));
  return {
    answered,
    closed,
    firstChunk: first.length,
    abort() {
      answered.catch(() => {}); // the aborted request's own "socket hang up"
      req.destroy();
    },
  };
}

/**
 * Two slow POSTs sent together: the gateway admits whichever it authenticates first and refuses the
 * other; resolves with the refused one's answer and the one still being read.
 */
async function oneRefused(first: ReturnType<typeof slowPost>, second: ReturnType<typeof slowPost>) {
  const winner = await Promise.race([first.answered.then(() => 'first' as const), second.answered.then(() => 'second' as const)]);
  const [refused, held] = winner === 'first' ? [first, second] : [second, first];
  return { refused: await refused.answered, held };
}

describe('authentication before the body', () => {
  let gateway: TestGateway;
  let tenant: TestTenant;
  beforeAll(async () => {
    gateway = await startGateway({ env: { MAX_INFLIGHT_BODY_BYTES: String(3 * 1024 * 1024) } });
    tenant = await createTenant(gateway, 'Early');
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it.each([
    ['no key', {}],
    ['an unknown key', { authorization: 'Bearer og_not-a-key' }],
  ])('answers a 21 MB body with %s 401 while the body is still being sent, and closes the connection', async (_name, headers) => {
    const declared = 21 * 1024 * 1024;
    const post = slowPost(gateway.url, headers, declared);
    const { response, body, sentBeforeAnswer } = await post.answered;
    expect(response.statusCode).toBe(401);
    expect(response.headers.connection).toBe('close');
    expect(JSON.parse(body).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    // The answer came while almost all of the declared body was still unsent.
    expect(sentBeforeAnswer).toBeLessThan(post.firstChunk + 4096);
    expect(sentBeforeAnswer).toBeLessThan(declared / 100);
    await post.closed;
    // And the gateway serves everyone else as before.
    expect(expectData(await gateway.graphql(VIEWER, {}, tenant.apiKey))).toEqual({ viewer: { tenant: { name: 'Early' } } });
  });

  it('reads the body of a valid key, and refuses with 503 and Retry-After beyond the instance-wide body budget', async () => {
    const declared = 2 * 1024 * 1024;
    // One request holds 2 of the 3 MiB budget while its body trickles in; the other does not fit.
    const { refused, held } = await oneRefused(
      slowPost(gateway.url, { authorization: `Bearer ${tenant.apiKey}` }, declared),
      slowPost(gateway.url, { authorization: `Bearer ${tenant.apiKey}` }, declared),
    );
    expect(refused.response.statusCode).toBe(503);
    expect(refused.response.headers['retry-after']).toBe('1');
    held.abort();
    await held.closed;
    // The budget is released when the request goes away: small requests pass again.
    expect(expectData(await gateway.graphql(VIEWER, {}, tenant.apiKey))).toEqual({ viewer: { tenant: { name: 'Early' } } });
  });
});

describe('the body budget is shared fairly', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startGateway({ env: { MAX_REQUEST_BYTES: String(1024 * 1024), MAX_INFLIGHT_BODY_BYTES: String(3 * 1024 * 1024) } });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('one tenant holds one large body at a time; others still send theirs, and small bodies always pass', async () => {
    const greedy = await createTenant(gateway, 'Greedy');
    const polite = await createTenant(gateway, 'Polite');
    const large = 1024 * 1024;
    const { refused, held: holding } = await oneRefused(
      slowPost(gateway.url, { authorization: `Bearer ${greedy.apiKey}` }, large),
      slowPost(gateway.url, { authorization: `Bearer ${greedy.apiKey}` }, large),
    );
    expect(refused.response.statusCode).toBe(503);
    // Another tenant's large body is still admitted, read and answered.
    const padded = JSON.stringify({ query: VIEWER, variables: { pad: 'x'.repeat(large - 200) } });
    const other = await fetch(`${gateway.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${polite.apiKey}` },
      body: padded,
    });
    expect(other.status).toBe(200);
    expect(await other.json()).toEqual({ data: { viewer: { tenant: { name: 'Polite' } } } });
    // Small requests are never held back.
    expect(expectData(await gateway.graphql(VIEWER, {}, polite.apiKey))).toEqual({ viewer: { tenant: { name: 'Polite' } } });
    expect(expectData(await gateway.graphql(VIEWER, {}, greedy.apiKey))).toEqual({ viewer: { tenant: { name: 'Greedy' } } });
    holding.abort();
    await holding.closed;
  });
});

describe('failed authentications', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    // Time stands still unless the test moves it: the failure credit refills only when told.
    gateway = await startGateway({ clock: manualClock() });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('an address that keeps guessing is throttled before the database is asked; a known key still passes', async () => {
    const tenant = await createTenant(gateway, 'Guessed');
    // Cached on this instance by its first use.
    expectData(await gateway.graphql(VIEWER, {}, tenant.apiKey));
    const statuses: number[] = [];
    for (let i = 0; i < 40; i += 1) statuses.push((await gateway.graphql(VIEWER, {}, `og_guess-${i}`)).status);
    expect(statuses.slice(0, 20)).toEqual(Array(20).fill(401));
    expect(statuses.slice(20)).toEqual(Array(20).fill(429));
    const throttled = await gateway.graphql(VIEWER, {}, 'og_guess-last');
    expect(throttled.status).toBe(429);
    expect(throttled.body.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(expectData(await gateway.graphql(VIEWER, {}, tenant.apiKey))).toEqual({ viewer: { tenant: { name: 'Guessed' } } });
  });
});
