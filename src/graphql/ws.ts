import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ExecutionArgs } from 'graphql';
import type { Context, SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { Authenticate } from '../auth/authenticate.ts';
import type { KeySessions } from '../auth/key-sessions.ts';
import { AppError, SubscriptionLimitError } from '../errors.ts';
import type { Viewer } from '../tenants/tenants.ts';
import type { Yoga } from './yoga.ts';

type WsExtra = { socket: WebSocket; request: IncomingMessage; viewer?: Viewer; requestId?: string };

export type WebSocketOptions = {
  yoga: Yoga;
  authenticate: Authenticate;
  /** A socket lives only as long as its key: revoking the key closes it with 4403. */
  sessions: Pick<KeySessions, 'open'>;
  maxPayloadBytes: number;
  connectionInitTimeoutMs: number;
  /** Ping interval; a socket that has not answered the previous ping is dropped. 0 = off. */
  keepaliveMs: number;
  /** 0 = no cap. */
  maxSubscriptionsPerConnection: number;
};

export type GraphQLWebSockets = {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Closes every socket as "going away" (1001) and stops the keep-alive. */
  close(): Promise<void>;
};

/** Prepares an operation through yoga's own pipeline (parse, validate, limits, context). */
async function prepareOperation(yoga: Yoga, ctx: Context<Record<string, unknown> | undefined, WsExtra>, params: SubscribePayload) {
  const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.request.socket, params });
  let document;
  try {
    document = enveloped.parse(params.query);
  } catch (error) {
    return [
      error instanceof AppError ? error : new AppError(error instanceof Error ? error.message : 'invalid query', 'GRAPHQL_PARSE_FAILED'),
    ];
  }
  const errors = enveloped.validate(enveloped.schema, document);
  if (errors.length > 0) return errors;
  let contextValue;
  try {
    contextValue = await enveloped.contextFactory();
  } catch (error) {
    if (error instanceof AppError) return [error];
    throw error;
  }
  const args: ExecutionArgs & { rootValue: unknown } = {
    schema: enveloped.schema,
    operationName: params.operationName ?? null,
    document,
    variableValues: params.variables ?? null,
    contextValue,
    rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
  };
  return args;
}

/** Pings every socket each interval and drops those that did not answer the last ping (vanished clients). */
function keepSocketsAlive(wss: WebSocketServer, intervalMs: number): (() => void) | null {
  if (intervalMs <= 0) return null;
  const alive = new WeakMap<WebSocket, boolean>();
  wss.on('connection', (socket) => {
    alive.set(socket, true);
    socket.on('pong', () => alive.set(socket, true));
  });
  const timer = setInterval(() => {
    for (const socket of wss.clients) {
      if (alive.get(socket) === false) {
        socket.terminate();
        continue;
      }
      alive.set(socket, false);
      socket.ping();
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** graphql-ws (subprotocol graphql-transport-ws) on /graphql, sharing yoga's pipeline. */
export function createGraphQLWebSockets(options: WebSocketOptions): GraphQLWebSockets {
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes });
  const wsServer = useServer<Record<string, unknown> | undefined, WsExtra>(
    {
      connectionInitWaitTimeout: options.connectionInitTimeoutMs,
      onConnect: async (ctx) => {
        try {
          const viewer = await options.authenticate(ctx.connectionParams?.authorization, ctx.extra.request.socket.remoteAddress);
          ctx.extra.viewer = viewer;
          ctx.extra.requestId = randomUUID();
          if (viewer.kind === 'tenant') {
            const socket = ctx.extra.socket;
            const forget = options.sessions.open(viewer.apiKeyId, () => socket.close(4403, 'Forbidden: the API key was revoked'));
            socket.once('close', forget);
          }
          return true;
        } catch {
          return false; // graphql-ws closes with 4403 Forbidden
        }
      },
      onSubscribe: async (ctx, _id, params) => {
        const perConnection = options.maxSubscriptionsPerConnection;
        if (perConnection > 0 && Object.keys(ctx.subscriptions).length > perConnection) {
          return [new SubscriptionLimitError(`Too many subscriptions on this connection (limit ${perConnection}).`)];
        }
        return prepareOperation(options.yoga, ctx, params);
      },
      execute: (args) => (args.rootValue as { execute: (a: unknown) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: unknown) => unknown }).subscribe(args) as never,
    },
    wss,
  );
  const stopKeepalive = keepSocketsAlive(wss, options.keepaliveMs);
  return {
    handleUpgrade(req, socket, head) {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    },
    async close() {
      stopKeepalive?.();
      for (const client of wss.clients) client.close(1001, 'server shutting down');
      await wsServer.dispose();
    },
  };
}
