// The benchmark's anchor: a bare graphql-yoga server with nothing behind it, run as its own process
// and measured with the same load generator as the gateway. `{ hello }` anchors query throughput;
// `tick` (over graphql-ws, wired into yoga exactly as the gateway does it) anchors subscription
// delivery and memory, published by `POST /publish?key=K&seq=N`, the stand-in for a webhook.
//   node bench/anchor-yoga.ts   → prints "anchor listening on <url>" (127.0.0.1, a free port)
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionArgs } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createPubSub, createSchema, createYoga } from 'graphql-yoga';
import { WebSocketServer } from 'ws';

type Tick = { key: string; seq: number };

const EVERYONE = '*';
const pubSub = createPubSub<{ tick: [key: string, tick: Tick] }>();

async function* fromCurrent(key: string): AsyncGenerator<Tick> {
  // Subscribed before the first value goes out, like the gateway's per-task subscription.
  const source = pubSub.subscribe('tick', key);
  yield { key, seq: 0 };
  yield* source;
}

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    type Query { hello: String! }
    type Tick { key: String! seq: Int! }
    type Subscription {
      "With a key: a value at once, then each publish to the key. Without: every publish to everyone."
      tick(key: String): Tick!
    }
  `,
  resolvers: {
    Query: { hello: () => 'world' },
    Subscription: {
      tick: {
        subscribe: (_root: unknown, args: { key?: string | null }) =>
          args.key ? fromCurrent(args.key) : pubSub.subscribe('tick', EVERYONE),
        resolve: (tick: Tick) => tick,
      },
    },
  },
});

const yoga = createYoga({ schema, graphqlEndpoint: '/graphql', landingPage: false, logging: false });

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://anchor');
  if (url.pathname === '/publish' && req.method === 'POST') {
    req.resume();
    req.once('end', () => {
      const key = url.searchParams.get('key') ?? EVERYONE;
      pubSub.publish('tick', key, { key, seq: Number(url.searchParams.get('seq') ?? 0) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    return;
  }
  if (url.pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  void yoga(req, res);
});

const wss = new WebSocketServer({ noServer: true });
const wsServer = useServer(
  {
    onSubscribe: async (ctx, _id, params) => {
      const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.request.socket, params });
      const document = enveloped.parse(params.query);
      const errors = enveloped.validate(enveloped.schema, document);
      if (errors.length > 0) return errors;
      const args: ExecutionArgs & { rootValue: unknown } = {
        schema: enveloped.schema,
        operationName: params.operationName ?? null,
        document,
        variableValues: params.variables ?? null,
        contextValue: await enveloped.contextFactory(),
        rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
      };
      return args;
    },
    execute: (args) => (args.rootValue as { execute: (a: unknown) => unknown }).execute(args) as never,
    subscribe: (args) => (args.rootValue as { subscribe: (a: unknown) => unknown }).subscribe(args) as never,
  },
  wss,
);
server.on('upgrade', (req, socket, head) => {
  if ((req.url ?? '/').split('?')[0] !== '/graphql') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as AddressInfo;
console.log(`anchor listening on http://127.0.0.1:${port}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const client of wss.clients) client.terminate();
  await wsServer.dispose();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await yoga.dispose();
  process.exit(0);
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
