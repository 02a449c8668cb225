import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createYoga } from 'graphql-yoga';
import { bearerToken } from './auth/api-keys.ts';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { UnauthenticatedError, ServiceUnavailableError } from './errors.ts';
import type { GraphQLContext, Services } from './graphql/context.ts';
import { schema } from './graphql/schema/index.ts';
import { sendJson } from './http/respond.ts';
import type { Logger } from './logger.ts';
import { createTenantService } from './tenants/tenants.ts';

export type AppDeps = {
  config: Config;
  database: Database;
  logger: Logger;
};

export type App = {
  /** Listens on config.host:config.port (0 picks a free port) and resolves with the bound base URL. */
  start(): Promise<{ url: string }>;
  /** Stops accepting, lets in-flight requests finish (bounded by SHUTDOWN_TIMEOUT_MS), disposes yoga. */
  stop(): Promise<void>;
  readonly server: Server;
};

export function createApp({ config, database, logger }: AppDeps): App {
  const services: Services = {
    tenants: createTenantService(database.db, { adminApiKey: config.adminApiKey }),
  };
  let draining = false;

  const yoga = createYoga<{ req: IncomingMessage; res: ServerResponse }, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    maskedErrors: true,
    logging: {
      debug: (...args) => logger.debug(args.map(String).join(' ')),
      info: (...args) => logger.info(args.map(String).join(' ')),
      warn: (...args) => logger.warn(args.map(String).join(' ')),
      error: (...args) => logger.error({ err: args.find((a) => a instanceof Error) }, args.map(String).join(' ')),
    },
    context: async ({ request }): Promise<GraphQLContext> => {
      const token = bearerToken(request.headers.get('authorization'));
      if (token === null) throw new UnauthenticatedError();
      let viewer: Awaited<ReturnType<typeof services.tenants.authenticate>>;
      try {
        viewer = await services.tenants.authenticate(token);
      } catch (error) {
        logger.warn({ err: error }, 'authentication failed: database unavailable');
        throw new ServiceUnavailableError();
      }
      if (viewer === null) throw new UnauthenticatedError('The API key is unknown or has been revoked.');
      return { viewer, services, logger };
    },
  });

  const openSockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      if (draining) return sendJson(res, 503, { status: 'draining' });
      void database.isReady().then(
        (ready) => sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'database unavailable' }),
        () => sendJson(res, 503, { status: 'database unavailable' }),
      );
      return;
    }
    if (path === '/graphql') return yoga(req, res);
    sendJson(res, 404, { error: 'not found' });
  });
  server.on('connection', (socket) => {
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  });

  return {
    server,
    async start() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return { url: `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${address.port}` };
    },
    async stop() {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timeout = new Promise<'timeout'>((resolve) => {
        setTimeout(() => resolve('timeout'), config.shutdownTimeoutMs).unref();
      });
      if ((await Promise.race([closed, timeout])) === 'timeout') {
        logger.warn({ open: openSockets.size }, 'shutdown timeout: closing remaining connections');
        server.closeAllConnections();
        await closed;
      }
      await yoga.dispose();
    },
  };
}
