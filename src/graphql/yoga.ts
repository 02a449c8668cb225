import type { IncomingMessage, ServerResponse } from 'node:http';
import { useOpenTelemetry } from '@envelop/opentelemetry';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { usePersistedOperations } from '@graphql-yoga/plugin-persisted-operations';
import { trace } from '@opentelemetry/api';
import { GraphQLError } from 'graphql';
import { createYoga, maskError } from 'graphql-yoga';
import type { Plugin, YogaServerInstance } from 'graphql-yoga';
import type { Authenticate } from '../auth/authenticate.ts';
import type { RateLimits } from '../auth/rate-limits.ts';
import { isConnectionError } from '../db/errors.ts';
import { ServiceUnavailableError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { QueryLimits } from '../query-limits.ts';
import type { Viewer } from '../tenants/tenants.ts';
import type { GraphQLContext, Services } from './context.ts';
import { createGraphiQLRenderer, graphiqlOptions } from './graphiql.ts';
import { useHiddenSuggestions, useQueryLimits } from './limits.ts';
import { schema } from './schema/index.ts';

/** What the transport hands yoga: the Node request (HTTP) or the graphql-ws context (`extra`). */
export type ServerContext = {
  req?: IncomingMessage;
  res?: ServerResponse;
  /** Set on WebSocket operations: the socket was authenticated once, at connection_init. */
  extra?: { viewer?: Viewer; requestId?: string };
  /** The request id the HTTP layer assigned. */
  requestId?: string;
  /** Set by the HTTP route, which checked the key (and the request rate) before reading the body. */
  viewer?: Viewer;
  /** Aborted when the HTTP exchange ends: a subscription started for it ends too. */
  signal?: AbortSignal;
};

export type Yoga = YogaServerInstance<ServerContext, GraphQLContext>;

export type YogaOptions = {
  services: Services;
  logger: Logger;
  authenticate: Authenticate;
  rateLimits: Pick<RateLimits, 'admitRequest'>;
  queryLimits: QueryLimits;
  corsOrigins: string[] | null;
  /** Persisted operations by id: only these run when given. */
  persistedOperations: ReadonlyMap<string, string> | null;
  otelTracing: boolean;
  /** Plugins of the composition root (e.g. operation metrics), run after the limits. */
  plugins?: Plugin[];
};

/** A database that cannot be reached is a retryable 503, not an "Unexpected error". */
const maskErrors = (error: unknown, message: string, isDev?: boolean) =>
  isConnectionError(error instanceof GraphQLError ? (error.originalError ?? error) : error)
    ? new ServiceUnavailableError()
    : maskError(error, message, isDev);

function pluginsFor(options: YogaOptions): Plugin[] {
  const plugins: Plugin[] = [
    useQueryLimits(options.queryLimits),
    useHiddenSuggestions(),
    useCSRFPrevention({ requestHeaders: ['authorization', 'x-graphql-yoga-csrf'] }),
    ...(options.plugins ?? []),
  ];
  if (options.otelTracing) {
    // Spans go to whatever SDK the operator registered globally (e.g. `node --import
    // @opentelemetry/auto-instrumentations-node/register`). Variables and results stay out of
    // spans: they may hold inline images and other tenants' data must never reach a shared backend.
    // An envelop plugin: yoga runs it as is, only its context type parameter differs.
    plugins.push(useOpenTelemetry({ resolvers: false, variables: false, result: false }, trace.getTracerProvider()) as Plugin);
  }
  const persisted = options.persistedOperations;
  if (persisted !== null) {
    plugins.push(usePersistedOperations({ getPersistedOperation: (key) => persisted.get(key) ?? null, allowArbitraryOperations: false }));
  }
  return plugins;
}

/** The GraphQL server shared by HTTP (POST, GET, SSE) and graphql-ws. */
export function createYogaServer(options: YogaOptions): Yoga {
  const { logger, services } = options;
  return createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    // The HTTP route has already bounded the body (a declared Content-Length within the request
    // limit and the instance's body budget; Node reads no further). yoga's own limit would wrap every
    // body in a stream pipeline, and its end builds a DOMException with a stack: 5% of a read's CPU.
    maxRequestBodySize: false,
    graphiql: graphiqlOptions,
    renderGraphiQL: createGraphiQLRenderer(schema),
    maskedErrors: { maskError: maskErrors },
    cors:
      options.corsOrigins === null
        ? false
        : { origin: options.corsOrigins, methods: ['GET', 'POST'], allowedHeaders: ['authorization', 'content-type', 'x-request-id'] },
    plugins: pluginsFor(options),
    logging: {
      debug: (...args) => logger.debug(args.map(String).join(' ')),
      info: (...args) => logger.info(args.map(String).join(' ')),
      warn: (...args) => logger.warn(args.map(String).join(' ')),
      error: (...args) => logger.error({ err: args.find((a) => a instanceof Error) }, args.map(String).join(' ')),
    },
    context: async (initial): Promise<GraphQLContext> => {
      let viewer = initial.viewer;
      if (viewer === undefined) {
        viewer =
          initial.extra?.viewer ??
          (await options.authenticate(initial.request.headers.get('authorization'), initial.req?.socket.remoteAddress));
        options.rateLimits.admitRequest(viewer);
      }
      const requestLogger = logger.child({
        requestId: initial.extra?.requestId ?? initial.requestId,
        tenantId: viewer.kind === 'tenant' ? viewer.tenantId : undefined,
        admin: viewer.kind === 'admin' || undefined,
      });
      return { viewer, services, logger: requestLogger, signal: initial.signal ?? null };
    },
  });
}
