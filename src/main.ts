import { ConfigError, loadConfig } from './config.ts';
import type { Config } from './config.ts';
import { createApp } from './app.ts';
import { connectDatabase } from './db/database.ts';
import { createKlingClient } from './kling/client.ts';
import type { KlingClient } from './kling/client.ts';
import { createSimulator } from './simulator/server.ts';
import type { Simulator } from './simulator/server.ts';
import { readPersistedOperations } from './graphql/persisted-operations.ts';
import { createLogger } from './logger.ts';
import { createMetrics } from './metrics/metrics.ts';
import { createSandboxTenantOnce, sandboxBanner } from './tenants/sandbox.ts';

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}

const config = configOrExit();
const logger = createLogger(config.logLevel);

/**
 * postgres.js 3.4.9 can write to a socket it has already torn down while the server is going away
 * (porsager/postgres issues 1154 and 1208, fixes not released). The write is moot, as the
 * connection is being replaced; crashing the gateway for it is not. Anything else is fatal.
 */
function isKnownDriverFault(error: unknown): boolean {
  return (
    error instanceof TypeError &&
    error.message === "Cannot read properties of null (reading 'write')" &&
    /postgres[\\/]src[\\/]connection\.js/.test(error.stack ?? '')
  );
}
process.on('uncaughtException', (error) => {
  if (isKnownDriverFault(error)) {
    logger.warn({ err: error }, 'ignored a known postgres.js fault on a closing connection');
    return;
  }
  logger.fatal({ err: error }, 'uncaught exception');
  process.exit(1);
});

const database = await connectDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
logger.info(
  { driver: database.driver, location: database.location },
  database.driver === 'pglite' ? `using embedded PGlite; data lives in ${database.location}` : `using PostgreSQL at ${database.location}`,
);
await database.migrate();
logger.info('migrations applied');

const metrics = createMetrics();
let upstream: KlingClient;
let simulator: Simulator | null = null;
if (config.cometApiKey === null) {
  simulator = createSimulator();
  const { url: simulatorUrl } = await simulator.listen(0, '127.0.0.1');
  upstream = createKlingClient({ baseUrl: simulatorUrl, apiKey: 'simulator', onCall: metrics.upstreamCall });
  logger.warn({ simulatorUrl }, `no COMETAPI_KEY: serving the built-in upstream simulator at ${simulatorUrl}`);
} else {
  upstream = createKlingClient({ baseUrl: config.cometApiBaseUrl, apiKey: config.cometApiKey, onCall: metrics.upstreamCall });
  logger.info({ upstream: config.cometApiBaseUrl }, 'upstream: CometAPI');
}

const persistedOperations = config.persistedOperationsFile === null ? null : readPersistedOperations(config.persistedOperationsFile);
const app = await createApp({ config, database, logger, upstream, metrics, persistedOperations });
const { url } = await app.start();
// With the simulator and the embedded database, the first start makes a tenant to try the API
// with. Settled before the "listening" line.
const sandboxMode = config.cometApiKey === null && config.databaseUrl === null && config.role !== 'worker';
const sandbox = sandboxMode ? await createSandboxTenantOnce(database.db) : null;
logger.info({ url, role: config.role }, `omni gateway listening on ${url}`);
if (sandboxMode) {
  const graphiql = `${app.publicBaseUrl()}/graphql`;
  // Plain output, not a log line: API keys never reach the logs.
  if (sandbox !== null) console.log(sandboxBanner(sandbox.apiKey, graphiql));
  logger.info(
    { graphiql },
    sandbox === null ? `GraphiQL at ${graphiql}; the sandbox key was printed at the first start` : 'sandbox tenant created',
  );
}

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  try {
    await app.stop();
    await simulator?.close();
    await database.close();
    logger.info('stopped');
    process.exit(0);
  } catch (error) {
    logger.error({ err: error }, 'shutdown failed');
    process.exit(1);
  }
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
