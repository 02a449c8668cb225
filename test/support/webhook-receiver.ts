import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ReceivedWebhook = { headers: IncomingHttpHeaders; body: string; json: Record<string, any>; answered: number };

/**
 * A loopback receiver of outbound webhooks: keeps every request (headers, raw body) with the
 * status it answered, which `answer` decides from the number of requests so far (1-based).
 */
export async function startWebhookReceiver(answer: (count: number, request: ReceivedWebhook) => number = () => 200) {
  const received: ReceivedWebhook[] = [];
  const waiters = new Set<{ match: (all: ReceivedWebhook[]) => boolean; resolve: () => void }>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const entry: ReceivedWebhook = { headers: req.headers, body, json: JSON.parse(body) as Record<string, any>, answered: 0 };
      entry.answered = answer(received.length + 1, entry);
      received.push(entry);
      res.writeHead(entry.answered).end();
      for (const waiter of waiters) {
        if (waiter.match(received)) {
          waiters.delete(waiter);
          waiter.resolve();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  /** Resolves once `match` holds for everything received; fails after `timeoutMs` with what came. */
  function waitUntil(match: (all: ReceivedWebhook[]) => boolean, timeoutMs = 10_000): Promise<void> {
    if (match(received)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(
          new Error(
            `receiver: condition not met within ${timeoutMs} ms; got ${JSON.stringify(received.map((r) => [r.headers['webhook-id'], r.json.type, r.answered]))}`,
          ),
        );
      }, timeoutMs);
      waiters.add(waiter);
    });
  }

  return {
    port,
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    waitUntil,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
