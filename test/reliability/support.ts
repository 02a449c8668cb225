import { encodeGlobalID } from '@pothos/plugin-relay';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSimulator } from '../../src/simulator/server.ts';
import type { Simulator } from '../../src/simulator/server.ts';

export const CREATE_PATH = '/kling/v1/videos/omni-video';
export const ADMIN = 'reliability-admin-key-0123456789';
export const UPSTREAM_KEY = 'reliability-upstream-key';

/** Switches both request-rate limiters off: load tests measure recovery, not throttling. */
export const NO_RATE_LIMITS = { RATE_LIMIT_REQUESTS_PER_SECOND: '0', RATE_LIMIT_CREATES_PER_MINUTE: '0' };

/** The environment of a gateway process under test: loopback, a given upstream, quick rechecks. */
export function gatewayProcessEnv(upstreamUrl: string): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_API_KEY: ADMIN,
    COMETAPI_KEY: UPSTREAM_KEY,
    COMETAPI_BASE_URL: upstreamUrl,
    PENDING_RECHECK_SECONDS: '1',
    RECONCILER_INTERVAL_MS: '100',
    VIDEO_STORE: 'none',
    LOG_LEVEL: 'info',
    // Recovery is measured here, not the upstream queue: every create is sent in its request
    // unless a test sets a budget of its own.
    UPSTREAM_MAX_IN_FLIGHT: '1000',
    ...NO_RATE_LIMITS,
  };
}

/**
 * A bounded poll on an observable condition (simulator stats, a database row, an HTTP status) for
 * the cases where no event tells us; resolves with the first truthy value of `probe`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== null && value !== undefined && value !== false) return value;
      lastError = null;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error && lastError.cause !== undefined ? ` (${String(lastError.cause)})` : '';
      const detail =
        lastError === null ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)}${cause})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export type GraphQLAnswer = {
  status: number;
  text: string;
  body: { data?: any; errors?: { message: string; extensions?: Record<string, unknown> }[] } | null;
};

/** One GraphQL POST; never throws on an HTTP status, only when the connection fails. */
export async function graphqlAt(
  url: string,
  token: string,
  query: string,
  variables: Record<string, unknown> = {},
  signal?: AbortSignal,
): Promise<GraphQLAnswer> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({ query, variables }),
    ...(signal === undefined ? {} : { signal }),
  });
  const text = await response.text();
  let body: GraphQLAnswer['body'] = null;
  try {
    body = JSON.parse(text) as GraphQLAnswer['body'];
  } catch {
    body = null;
  }
  return { status: response.status, text, body };
}

export async function createTenantAt(url: string, name: string): Promise<{ id: string; apiKey: string }> {
  const answer = await graphqlAt(
    url,
    ADMIN,
    'mutation ($name: String!) { createTenant(input: { name: $name }) { apiKey tenant { id } } }',
    {
      name,
    },
  );
  const created = answer.body?.data?.createTenant as { apiKey: string; tenant: { id: string } } | undefined;
  if (created === undefined) throw new Error(`createTenant failed: ${answer.status} ${answer.text}`);
  return { id: created.tenant.id, apiKey: created.apiKey };
}

export const CREATE = `mutation ($input: CreateOmniVideoInput!) {
  createOmniVideo(input: $input) {
    __typename
    ... on CreateOmniVideoSuccess { task { id status statusMessage version upstreamTaskId } }
    ... on UpstreamError { message code retryable }
    ... on InvalidInputError { issues { path message } }
    ... on Error { message }
  }
}`;

export const WATCH_TASK = 'subscription ($id: ID) { omniTaskUpdated(id: $id) { id status statusMessage version upstreamTaskId } }';

export function taskGlobalId(taskId: string): string {
  return encodeGlobalID('OmniTask', taskId);
}

export type HeldCreate = { externalTaskId: string; upstreamTaskId: string; release(): void };

/**
 * The upstream simulator on 127.0.0.1:0 behind a thin HTTP layer that records every request and
 * can hold a create's answer after the simulator has accepted the task: the window between
 * "the upstream accepted" and "the gateway heard about it", which the simulator's own `slow`
 * fault does not open (it delays before accepting).
 */
export type Upstream = {
  url: string;
  simulator: Simulator;
  requests: { method: string; path: string; at: number }[];
  /** While true, each accepted create's answer is held back and offered to `nextHeldCreate`. */
  holdCreates: boolean;
  /** Resolves when the simulator has accepted a create whose answer is being held. */
  nextHeldCreate(timeoutMs?: number): Promise<HeldCreate>;
  /** Resolves when the body of the next create has fully reached the upstream. */
  nextCreateReceived(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
};

export async function startUpstream(options: { delays?: { processingMs: number; finishMs: number } } = {}): Promise<Upstream> {
  const simulator = createSimulator({ apiKey: UPSTREAM_KEY, delays: options.delays ?? { processingMs: 50, finishMs: 150 } });
  const held: HeldCreate[] = [];
  const heldWaiters: ((create: HeldCreate) => void)[] = [];
  const receivedWaiters: (() => void)[] = [];
  const upstream: Upstream = {
    url: '',
    simulator,
    requests: [],
    holdCreates: false,
    nextHeldCreate: (timeoutMs = 10_000) =>
      withTimeout(
        new Promise<HeldCreate>((resolve) => {
          const ready = held.shift();
          if (ready !== undefined) resolve(ready);
          else heldWaiters.push(resolve);
        }),
        timeoutMs,
        'a held create answer',
      ),
    nextCreateReceived: (timeoutMs = 10_000) =>
      withTimeout(new Promise<void>((resolve) => receivedWaiters.push(resolve)), timeoutMs, 'a create request at the upstream'),
    close: async () => {
      await simulator.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://upstream').pathname;
    upstream.requests.push({ method: req.method ?? 'GET', path, at: Date.now() });
    if (req.method === 'POST' && path === CREATE_PATH) {
      req.once('end', () => {
        for (const wake of receivedWaiters.splice(0)) wake();
      });
      if (upstream.holdCreates) holdAnswer(res);
    }
    simulator.handle(req, res);
  });

  function holdAnswer(res: ServerResponse): void {
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.end = ((...args: unknown[]) => {
      const body = JSON.parse(String(args[0])) as { data?: { task_id?: string; task_info?: { external_task_id?: string } } };
      const create: HeldCreate = {
        externalTaskId: body.data?.task_info?.external_task_id ?? '',
        upstreamTaskId: body.data?.task_id ?? '',
        release: () => void end(...args),
      };
      const waiter = heldWaiters.shift();
      if (waiter !== undefined) waiter(create);
      else held.push(create);
      return res;
    }) as ServerResponse['end'];
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
