import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

type Body = Record<string, unknown>;

/** A loopback webhook endpoint that records JSON bodies and lets a test await a matching one. */
export async function startCallbackReceiver(): Promise<{
  url: string;
  bodies: Body[];
  waitFor(match: (body: Body) => boolean, timeoutMs?: number): Promise<Body>;
  close(): Promise<void>;
}> {
  const bodies: Body[] = [];
  const waiters = new Set<{ match: (b: Body) => boolean; resolve: (b: Body) => void }>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200).end();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Body;
      bodies.push(body);
      for (const w of waiters) {
        if (w.match(body)) {
          waiters.delete(w);
          w.resolve(body);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  function waitFor(match: (body: Body) => boolean, timeoutMs = 5000): Promise<Body> {
    const seen = bodies.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (b: Body) => {
          clearTimeout(timer);
          resolve(b);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`no matching callback within ${timeoutMs} ms; got ${JSON.stringify(bodies)}`));
      }, timeoutMs);
      waiters.add(waiter);
    });
  }

  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    waitFor,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
