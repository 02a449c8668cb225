import { createClient } from 'graphql-ws';
import type { Client } from 'graphql-ws';
import WebSocket from 'ws';

export type Received = { data?: Record<string, any> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };

/** Collects what a subscription delivers and lets a test wait for it, with a timeout, never a sleep. */
export class Collector {
  readonly items: Received[] = [];
  done = false;
  error: unknown = null;
  private waiters = new Set<() => void>();

  push(item: Received): void {
    this.items.push(item);
    this.wake();
  }
  finish(error: unknown = null): void {
    this.done = true;
    this.error = error;
    this.wake();
  }
  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves once `check` holds (checked now and after every delivery); rejects after `timeoutMs`. */
  until(check: (collector: this) => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const test = () => {
        if (check(this)) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; received ${JSON.stringify(this.items)} (done: ${this.done})`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(test);
      };
      this.waiters.add(test);
      test();
    });
  }

  untilCount(count: number, timeoutMs?: number): Promise<void> {
    return this.until((c) => c.items.length >= count, `${count} deliveries`, timeoutMs);
  }
  untilDone(timeoutMs?: number): Promise<void> {
    return this.until((c) => c.done, 'completion', timeoutMs);
  }
}

const acknowledgedClients = new WeakSet<Client>();

export function wsClient(gatewayUrl: string, apiKey: string | null): Client {
  const client = createClient({
    url: `${gatewayUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: apiKey === null ? {} : { authorization: `Bearer ${apiKey}` },
    retryAttempts: 0,
    lazy: true,
  });
  client.on('connected', () => acknowledgedClients.add(client));
  return client;
}

/** Subscribes over graphql-ws; resolves once the server acknowledged the connection. */
export async function subscribeWs(
  client: Client,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<{ collector: Collector; unsubscribe: () => void }> {
  const collector = new Collector();
  const acknowledged = acknowledgedClients.has(client)
    ? Promise.resolve()
    : new Promise<void>((resolve, reject) => {
        const offAck = client.on('connected', () => {
          offAck();
          resolve();
        });
        const offClosed = client.on('closed', (event) => {
          offClosed();
          reject(new Error(`socket closed before ack: ${(event as { code?: number }).code}`));
        });
      });
  const unsubscribe = client.subscribe(
    { query, variables },
    {
      next: (value) => collector.push(value as Received),
      error: (error) => collector.finish(error),
      complete: () => collector.finish(),
    },
  );
  await acknowledged;
  return { collector, unsubscribe };
}

/** Subscribes over SSE (graphql-over-http "distinct connections" mode) with a real HTTP request. */
export async function subscribeSse(
  gatewayUrl: string,
  apiKey: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<{ collector: Collector; close: () => void }> {
  const collector = new Collector();
  const abort = new AbortController();
  const response = await fetch(`${gatewayUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query, variables }),
    signal: abort.signal,
  });
  if (!response.ok || response.body === null) throw new Error(`SSE refused: ${response.status} ${await response.text()}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let boundary = buffer.indexOf('\n\n');
        while (boundary !== -1) {
          const block = buffer.slice(0, boundary);
          buffer = buffer.slice(boundary + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (event === 'complete') collector.finish();
          else if (data) collector.push(JSON.parse(data) as Received);
          boundary = buffer.indexOf('\n\n');
        }
      }
      collector.finish();
    } catch (error) {
      collector.finish(abort.signal.aborted ? null : error);
    }
  })();
  return { collector, close: () => abort.abort() };
}
