import { cacheExchange, Client, fetchExchange, subscriptionExchange } from '@urql/core';
import type { Exchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import type { Client as WsClient } from 'graphql-ws';
import type { RuntimeConfig } from './runtime-config.ts';

/** What the WebSocket last did, for the connection badge and for telling a refused key from a drop. */
export type SocketEvent = { kind: 'connected' } | { kind: 'closed'; code: number };

/** The gateway closes a WebSocket whose key is missing, wrong or revoked with 4403. */
export const KEY_REFUSED_CLOSE_CODE = 4403;

/** How often the app pings the gateway, and how long it waits for the pong before it drops the socket. */
const PING_EVERY_MS = 10_000;
const PONG_WITHIN_MS = 5_000;

export type GatewayClient = {
  /** urql: queries and mutations over HTTP; subscriptions over graphql-ws or SSE. */
  urql: Client;
  transport: RuntimeConfig['transport'];
  /** Listens to the WebSocket's connects and closes (nothing is emitted with SSE). */
  onSocket(listener: (event: SocketEvent) => void): () => void;
  dispose(): void;
};

/**
 * One client per API key. The key travels as `Authorization: Bearer …` on every HTTP request
 * (queries, mutations, SSE streams) and in `connectionParams.authorization` on the WebSocket,
 * whose `connection_init` the gateway checks before anything else.
 */
export function createGatewayClient(config: RuntimeConfig, apiKey: string): GatewayClient {
  const authorization = `Bearer ${apiKey}`;
  const listeners = new Set<(event: SocketEvent) => void>();
  const emit = (event: SocketEvent) => {
    for (const listener of listeners) listener(event);
  };

  let ws: WsClient | null = null;
  const exchanges: Exchange[] = [cacheExchange];
  if (config.transport === 'ws') {
    ws = createSocketClient(config.wsUrl, authorization, emit);
    const socket = ws;
    exchanges.push(
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? '' };
          return { subscribe: (sink) => ({ unsubscribe: socket.subscribe(input, sink) }) };
        },
      }),
    );
  }
  exchanges.push(fetchExchange);

  const urql = new Client({
    url: config.graphqlUrl,
    exchanges,
    // Every operation as a POST with a JSON body, as the API guide shows them.
    preferGetMethod: false,
    // With SSE, subscriptions go through fetch with `Accept: text/event-stream`.
    fetchSubscriptions: config.transport === 'sse',
    fetchOptions: () => ({ headers: { authorization } }),
  });

  return {
    urql,
    transport: config.transport,
    onSocket(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose() {
      listeners.clear();
      void ws?.dispose();
    },
  };
}

function createSocketClient(url: string, authorization: string, emit: (event: SocketEvent) => void): WsClient {
  let socket: WebSocket | null = null;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  return createWsClient({
    url,
    connectionParams: { authorization },
    // graphql-ws would retry by sending the first subscribe message again, with the cursor it had
    // then. The live feed resumes by itself instead, from the last changeCursor it handled.
    retryAttempts: 0,
    // The feed subscribes again at once after CURSOR_EXPIRED: keep the socket for that moment
    // instead of closing it with the last subscription and opening another.
    lazyCloseTimeout: 2_000,
    // A socket that died without a close frame (a laptop's lid, a proxy) shows up only as a
    // missing pong: close it, so the feed resumes.
    keepAlive: PING_EVERY_MS,
    on: {
      connected: (connected) => {
        socket = connected as WebSocket;
        emit({ kind: 'connected' });
      },
      ping: (received) => {
        if (received) return;
        clearTimeout(pongTimer);
        pongTimer = setTimeout(() => {
          if (socket?.readyState === WebSocket.OPEN) socket.close(4408, 'Pong timeout');
        }, PONG_WITHIN_MS);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
      closed: (event) => {
        clearTimeout(pongTimer);
        socket = null;
        emit({ kind: 'closed', code: (event as CloseEvent).code });
      },
    },
  });
}
