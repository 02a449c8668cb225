import { serverAudits } from 'graphql-http';
import { createClient } from 'graphql-ws';
import type { AuditResult } from 'graphql-http';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { NO_RATE_LIMITS } from './load.ts';

const INIT_TIMEOUT_MS = 300;

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  gateway = await startGateway({
    delays: { processingMs: 600_000, finishMs: 1_200_000 },
    env: { ...NO_RATE_LIMITS, WS_CONNECTION_INIT_TIMEOUT_MS: String(INIT_TIMEOUT_MS) },
  });
  gateway.simulator.settings.callbacks = false;
  tenant = await createTenant(gateway, 'Conformance');
});
afterAll(async () => {
  await gateway?.stop();
});

describe('GraphQL over HTTP (graphql-http audits)', () => {
  it('passes every MUST audit on /graphql; SHOULD and MAY failures are printed', { timeout: 30_000 }, async () => {
    // The audits send `{ __typename }` and friends; every request carries the tenant's key.
    const fetchFn: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers);
      headers.set('authorization', `Bearer ${tenant.apiKey}`);
      return fetch(input, { ...init, headers });
    };
    const audits = serverAudits({ url: `${gateway.url}/graphql`, fetchFn });
    const results: AuditResult[] = [];
    for (const audit of audits) results.push(await audit.fn());
    const describeFailure = async (result: AuditResult) => {
      if (result.status === 'ok') return '';
      const body = await result.response.text().catch(() => '(body already read)');
      return `${result.name} [${result.id}]: ${result.reason}\n    → ${result.response.status} ${body.slice(0, 300)}`;
    };
    const advisory = results.filter((result) => result.status !== 'ok' && !result.name.startsWith('MUST'));
    if (advisory.length > 0) {
      console.log(
        `graphql-http: ${advisory.length} SHOULD/MAY audits not met:\n${(await Promise.all(advisory.map(describeFailure))).join('\n')}`,
      );
    }
    const mustFailures = results.filter((result) => result.status !== 'ok' && result.name.startsWith('MUST'));
    const musts = results.filter((result) => result.name.startsWith('MUST')).length;
    console.log(
      `graphql-http: ${results.length} audits (${musts} MUST): ${musts - mustFailures.length} MUST met, ` +
        `${results.length - musts - advisory.length} of ${results.length - musts} SHOULD/MAY met`,
    );
    expect(results.filter((result) => result.name.startsWith('MUST')).length).toBeGreaterThan(10);
    expect((await Promise.all(mustFailures.map(describeFailure))).join('\n')).toBe('');
  });
});

// --- graphql-ws close codes ----------------------------------------------------------------------

type RawSocket = {
  socket: WebSocket;
  send(message: unknown): void;
  /** Resolves with the next message of this type (past or future); rejects on close or timeout. */
  next(type: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string; afterMs: number }>;
};

/** A bare graphql-transport-ws socket, to send what a well-behaved client never would. */
async function rawSocket(): Promise<RawSocket> {
  const socket = new WebSocket(`${gateway.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  const received: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let openedAt = 0;
  const closed = new Promise<{ code: number; reason: string; afterMs: number }>((resolve) => {
    socket.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString(), afterMs: performance.now() - openedAt });
      for (const wake of waiters) wake();
    });
  });
  socket.on('message', (data) => {
    received.push(JSON.parse(data.toString()) as Record<string, unknown>);
    for (const wake of waiters) wake();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => {
      openedAt = performance.now();
      resolve();
    });
    socket.once('error', reject);
  });
  return {
    socket,
    closed,
    send: (message) => socket.send(typeof message === 'string' ? message : JSON.stringify(message)),
    next: (type, timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = received.find((message) => message.type === type);
          if (found !== undefined) {
            finish();
            resolve(found);
          } else if (socket.readyState === WebSocket.CLOSED) {
            finish();
            reject(new Error(`socket closed before a "${type}" message; received ${JSON.stringify(received)}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no "${type}" message within ${timeoutMs} ms; received ${JSON.stringify(received)}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
  };
}

async function initialised(): Promise<RawSocket> {
  const raw = await rawSocket();
  raw.send({ type: 'connection_init', payload: { authorization: `Bearer ${tenant.apiKey}` } });
  await raw.next('connection_ack');
  return raw;
}

/** Waits for the close, with a bound: a socket left open fails the test instead of hanging it. */
function closeOf(raw: RawSocket, timeoutMs = 5_000): Promise<{ code: number; reason: string; afterMs: number }> {
  return Promise.race([
    raw.closed,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs).unref()),
  ]).finally(() => raw.socket.terminate());
}

const TENANT_FEED = 'subscription { omniTaskUpdated { id status version } }';

describe('graphql-ws close codes', () => {
  it('a valid key is acknowledged (the control for the refusals below)', async () => {
    const raw = await initialised();
    raw.socket.close(1000);
    expect((await raw.closed).code).toBe(1000);
  });

  it.each([
    ['no payload', undefined],
    ['a null payload', null],
    ['an empty object', {}],
    ['a number', { authorization: 42 }],
    ['an array', { authorization: ['Bearer og_x'] }],
    ['an object', { authorization: { bearer: 'og_x' } }],
    ['null', { authorization: null }],
    ['"Bearer" alone', { authorization: 'Bearer' }],
    ['another scheme', { authorization: 'Basic dXNlcjpwYXNz' }],
    ['a token with trailing garbage', { authorization: 'Bearer og_x og_y' }],
    ['a header under another name', { token: 'og_x' }],
  ])('refuses connectionParams with %s in place of a key with 4403', async (_name, payload) => {
    const raw = await rawSocket();
    raw.send(payload === undefined ? { type: 'connection_init' } : { type: 'connection_init', payload });
    expect((await closeOf(raw)).code).toBe(4403);
  });

  it("refuses the tenant's own key in a malformed Authorization value with 4403", async () => {
    for (const authorization of [tenant.apiKey, `Bearer ${tenant.apiKey} extra`, `Token ${tenant.apiKey}`]) {
      const raw = await rawSocket();
      raw.send({ type: 'connection_init', payload: { authorization } });
      expect((await closeOf(raw)).code, authorization.replace(tenant.apiKey, '<key>')).toBe(4403);
    }
  });

  it('refuses a connection_init whose payload is not an object with 4400 (graphql-ws protocol)', async () => {
    for (const payload of [`Bearer ${tenant.apiKey}`, 42, [`Bearer ${tenant.apiKey}`]]) {
      const raw = await rawSocket();
      raw.send({ type: 'connection_init', payload });
      expect((await closeOf(raw)).code, JSON.stringify(payload).replace(tenant.apiKey, '<key>')).toBe(4400);
    }
  });

  it('the graphql-ws client with a non-string authorization is closed with 4403', async () => {
    const shaped = createClient({
      url: `${gateway.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: { value: `Bearer ${tenant.apiKey}` } },
      retryAttempts: 0,
      lazy: true,
    });
    try {
      const closed = new Promise<number>((resolve) => shaped.on('closed', (event) => resolve((event as { code: number }).code)));
      shaped.subscribe({ query: TENANT_FEED }, { next: () => {}, error: () => {}, complete: () => {} });
      expect(await closed).toBe(4403);
    } finally {
      await shaped.dispose();
    }
  });

  it('closes a socket that never sends connection_init with 4408', async () => {
    const raw = await rawSocket();
    expect((await closeOf(raw, 10_000)).code).toBe(4408);
  });

  it(`honours WS_CONNECTION_INIT_TIMEOUT_MS (${INIT_TIMEOUT_MS} ms; graphql-ws alone would wait 3 s)`, async () => {
    const raw = await rawSocket();
    const { code, afterMs } = await closeOf(raw, 10_000);
    expect(code).toBe(4408);
    expect(afterMs).toBeGreaterThanOrEqual(INIT_TIMEOUT_MS - 50);
    expect(afterMs).toBeLessThan(2_000);
  });

  it('closes with 4409 when a subscribe reuses the id of a live subscription', async () => {
    const raw = await initialised();
    raw.send({ id: 'same', type: 'subscribe', payload: { query: TENANT_FEED } });
    raw.send({ id: 'same', type: 'subscribe', payload: { query: TENANT_FEED } });
    const { code, reason } = await closeOf(raw);
    expect(code).toBe(4409);
    expect(reason).toContain('same');
  });

  it('closes with 4429 on a second connection_init', async () => {
    const raw = await initialised();
    raw.send({ type: 'connection_init', payload: { authorization: `Bearer ${tenant.apiKey}` } });
    expect((await closeOf(raw)).code).toBe(4429);
  });

  it('closes with 4401 on a subscribe before the connection is acknowledged', async () => {
    const raw = await rawSocket();
    raw.send({ id: '1', type: 'subscribe', payload: { query: TENANT_FEED } });
    expect((await closeOf(raw)).code).toBe(4401);
  });
});
