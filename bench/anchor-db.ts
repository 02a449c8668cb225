// The benchmark's database anchors: what a server with nothing but the database behind it does on
// the same rows, the same PostgreSQL and the same pool size as the gateway. Run as its own process
// (PostgreSQL only), measured with the same load generator as the gateway:
// - `POST /callback/{taskId}`: bare node:http + postgres.js, one prepared single-row UPDATE per
//   request (the callback-ingestion anchor);
// - `/graphql`: bare yoga, no auth, no ORM: `task(id)` is one prepared single-row SELECT,
//   `tasks(tenantId, first, after)` one prepared keyset SELECT (the read anchors).
//   DATABASE_URL=… DB_POOL_SIZE=10 node bench/anchor-db.ts → prints "db anchor listening on <url>"
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSchema, createYoga } from 'graphql-yoga';
import postgres from 'postgres';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required');
const sql = postgres(url, { max: Number(process.env.DB_POOL_SIZE ?? 10), onnotice: () => {}, prepare: true });

type TaskRow = {
  id: string;
  status: string;
  version: number;
  prompt: string;
  mode: string;
  aspect_ratio: string;
  duration_seconds: number;
  created_at: Date;
  updated_at: Date;
  completed_at: Date | null;
  videos: { id: string; upstreamUrl: string; durationSeconds: number }[];
};

const COLUMNS = sql`id, status, version, prompt, mode, aspect_ratio, duration_seconds, created_at, updated_at, completed_at, videos`;

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    type Video { id: String! url: String! durationSeconds: Float! }
    type Task {
      id: ID! status: String! version: Int! prompt: String! mode: String! aspectRatio: String!
      durationSeconds: Int! createdAt: String! updatedAt: String! completedAt: String videos: [Video!]!
    }
    type Query {
      task(id: ID!): Task
      "Newest first, keyset-paged by (createdAt, id) like the gateway's list."
      tasks(tenantId: ID!, first: Int!, afterCreatedAt: String, afterId: ID): [Task!]!
    }
  `,
  resolvers: {
    Query: {
      task: async (_root: unknown, args: { id: string }) => {
        const [row] = await sql<TaskRow[]>`select ${COLUMNS} from omni_tasks where id = ${args.id}`;
        return row ?? null;
      },
      tasks: (_root: unknown, args: { tenantId: string; first: number; afterCreatedAt?: string | null; afterId?: string | null }) =>
        args.afterCreatedAt && args.afterId
          ? sql<TaskRow[]>`select ${COLUMNS} from omni_tasks where tenant_id = ${args.tenantId}
              and (created_at, id) < (${args.afterCreatedAt}::timestamptz, ${args.afterId}::uuid)
              order by created_at desc, id desc limit ${args.first}`
          : sql<TaskRow[]>`select ${COLUMNS} from omni_tasks where tenant_id = ${args.tenantId}
              order by created_at desc, id desc limit ${args.first}`,
    },
    Task: {
      aspectRatio: (row: TaskRow) => row.aspect_ratio,
      durationSeconds: (row: TaskRow) => row.duration_seconds,
      createdAt: (row: TaskRow) => row.created_at.toISOString(),
      updatedAt: (row: TaskRow) => row.updated_at.toISOString(),
      completedAt: (row: TaskRow) => row.completed_at?.toISOString() ?? null,
    },
    Video: { url: (video: { upstreamUrl: string }) => video.upstreamUrl },
  },
});

const yoga = createYoga({ schema, graphqlEndpoint: '/graphql', landingPage: false, logging: false });
const CALLBACK = /^\/callback\/([0-9a-f-]{36})$/;

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  const callback = CALLBACK.exec(path);
  if (callback !== null && req.method === 'POST') {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => {
      // Parsed like a callback body would be, then the one UPDATE.
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      sql`update omni_tasks set status = 'PROCESSING', version = version + 1, updated_at = now() where id = ${callback[1] ?? ''}`.then(
        (result) => res.writeHead(200, { 'content-type': 'application/json' }).end(`{"ok":true,"changed":${result.count === 1}}`),
        () => res.writeHead(503).end(),
      );
    });
    return;
  }
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  void yoga(req, res);
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as AddressInfo;
console.log(`db anchor listening on http://127.0.0.1:${port}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await sql.end({ timeout: 2 });
  process.exit(0);
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
