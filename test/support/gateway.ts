import { createApp } from '../../src/app.ts';
import type { App } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Config } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase } from './database.ts';
import type { TestDatabase } from './database.ts';

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export type GraphQLResponse<T = Record<string, unknown>> = {
  status: number;
  body: { data?: T | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
};

export type TestGateway = {
  url: string;
  app: App;
  config: Config;
  database: TestDatabase;
  /** POSTs an operation; `token` null sends no Authorization header. */
  graphql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string | null,
  ): Promise<GraphQLResponse<T>>;
  stop(): Promise<void>;
};

export async function startGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const database = await createTestDatabase();
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'silent', ...env });
  const app = createApp({ config, database, logger: createLogger(config.logLevel) });
  const { url } = await app.start();
  return {
    url,
    app,
    config,
    database,
    async graphql(query, variables, token = ADMIN_KEY) {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify({ query, variables }),
      });
      const text = await response.text();
      try {
        return { status: response.status, body: JSON.parse(text) };
      } catch {
        throw new Error(`non-JSON answer (${response.status}) to ${query}:\n${text}`);
      }
    },
    async stop() {
      await app.stop();
      await database.drop();
    },
  };
}

/** Fails with the operation and the whole answer, so a broken assertion explains itself. */
export function expectData<T>(response: GraphQLResponse<T>, query = ''): T {
  if (response.status !== 200 || response.body.errors !== undefined || !response.body.data) {
    throw new Error(`expected data for ${query}\ngot ${response.status}: ${JSON.stringify(response.body, null, 2)}`);
  }
  return response.body.data;
}
