import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import * as schema from './schema.ts';
import { createStatementPolicy, preparingClient } from './statements.ts';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
/** Either the database or an open transaction: services accept both. */
export type Executor = Db | Tx;

export type Database = {
  readonly driver: 'postgres' | 'pglite';
  /** Where the data lives, for the start-up log (never includes a password). */
  readonly location: string;
  readonly db: Db;
  /** Subscribes to a notification channel; `onListen` also runs after every reconnect. */
  listen(channel: string, onPayload: (payload: string) => void, onListen?: () => void): Promise<() => Promise<void>>;
  /** Applies pending migrations under a cluster-wide advisory lock, so concurrent starts do not race. */
  migrate(): Promise<void>;
  /** True when the database answers and every migration of this build has been applied. */
  isReady(): Promise<boolean>;
  close(): Promise<void>;
};

export const migrationsFolder = fileURLToPath(new URL('../../migrations', import.meta.url));

// An arbitrary constant shared by every instance of the gateway: the key of the migration lock.
const MIGRATION_LOCK_KEY = 7_316_044_211;

export function rowsOf<T>(result: unknown): T[] {
  // postgres.js returns an array-like row list; PGlite returns `{ rows }`.
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

export async function queryRows<T>(executor: Executor, query: SQL): Promise<T[]> {
  return rowsOf<T>(await executor.execute(query));
}

/** A query built but not yet sent: a drizzle query builder, or `executor.execute(sql)`. */
export type Startable<T = unknown> = { execute(): Promise<T> };

/**
 * Sends queries of one transaction together and waits for all their answers: one round trip
 * instead of one each. Each query is started here, in this order; drizzle hands a started query
 * to the driver at once, which sends it on the transaction's connection in that order without
 * waiting for the answers before it (postgres.js pipelines; PGlite runs them one after another).
 * So the server runs them in this order, each seeing what the ones before it wrote. Should one
 * fail, the transaction is aborted and so are those after it: every answer is awaited (the
 * transaction must not end with queries of it still on the wire), then the first failure in
 * this order is thrown.
 */
export async function pipeline<const T extends readonly Startable[]>(
  ...queries: T
): Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]['execute']>> }> {
  const settled = await Promise.allSettled(queries.map((query) => query.execute()));
  const failed = settled.find((outcome) => outcome.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<ReturnType<T[K]['execute']>>;
  };
}

/** The parts of drizzle's session that run a query as a named (prepared) statement. */
type PreparingSession = {
  dialect: { sqlToQuery(query: SQL): { sql: string; params: unknown[] } };
  prepareQuery(
    query: { sql: string; params: unknown[] },
    fields: undefined,
    name: string,
    arrayMode: false,
  ): { execute(): Promise<unknown> };
};

/**
 * `queryRows` as a prepared statement: drizzle sends every other raw query unprepared, so the
 * server parses and plans it at each call. postgres.js keeps one prepared statement per distinct
 * text and connection, so this is for hot statements whose text never varies (no lists of
 * varying length), such as a callback's one statement and the change log's tail read.
 */
export async function queryPreparedRows<T>(executor: Executor, query: SQL): Promise<T[]> {
  const session = (executor as unknown as { session: PreparingSession }).session;
  return rowsOf<T>(await session.prepareQuery(session.dialect.sqlToQuery(query), undefined, 'hot', false).execute());
}

async function expectedMigrationCount(): Promise<number> {
  const journal = JSON.parse(await readFile(resolve(migrationsFolder, 'meta/_journal.json'), 'utf8')) as {
    entries: unknown[];
  };
  return journal.entries.length;
}

async function appliedMigrationCount(db: Db): Promise<number> {
  const rows = await queryRows<{ count: number | string }>(db, sql`select count(*)::int as count from drizzle.__drizzle_migrations`);
  return Number(rows[0]?.count ?? 0);
}

async function migrationsApplied(db: Db): Promise<boolean> {
  try {
    return (await appliedMigrationCount(db)) >= (await expectedMigrationCount());
  } catch {
    return false;
  }
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/**
 * Distinct query texts prepared per process (statements.ts): the hot paths use a few dozen; the
 * bound keeps texts that vary (lists of every length) from piling up on every connection. The
 * server keeps up to about 50 KB per prepared text and connection: at most some 6 MB per
 * connection, 60 MB for a pool of 10.
 */
const PREPARED_TEXTS = 128;

export function connectPostgres(url: string, options: { max?: number } = {}): Database {
  const client = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    // Fail fast while the server is down instead of queueing requests for a long time: the
    // default reconnect backoff grows to 20 s, and queued queries wait through all of it.
    connect_timeout: 5,
    backoff: (retries: number) => Math.min(0.5, 0.05 * 2 ** retries),
    idle_timeout: 60,
  });
  const db = drizzlePostgres(preparingClient(client, createStatementPolicy({ maxTexts: PREPARED_TEXTS })), { schema }) as unknown as Db;
  return {
    driver: 'postgres',
    location: redact(url),
    db,
    async listen(channel, onPayload, onListen) {
      const { unlisten } = await client.listen(channel, onPayload, onListen);
      return unlisten;
    },
    async migrate() {
      const lockClient = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await lockClient`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
        try {
          await migratePostgres(drizzlePostgres(lockClient), { migrationsFolder });
        } finally {
          await lockClient`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
        }
      } finally {
        await lockClient.end();
      }
    },
    isReady: () => migrationsApplied(db),
    async close() {
      await client.end({ timeout: 5 });
    },
  };
}

/**
 * `dataDir` null means an in-memory database (tests). `loadDataDir` starts it from a dump of
 * another PGlite database (`dumpDataDir`) instead of an empty one: the tests start each database
 * from one migrated once, which skips PGlite's initdb (seconds) and the migrations.
 */
export async function connectPglite(dataDir: string | null, options: { loadDataDir?: Blob } = {}): Promise<Database> {
  if (dataDir !== null) mkdirSync(dataDir, { recursive: true });
  const client = dataDir === null ? new PGlite(options) : new PGlite(dataDir, options);
  await client.waitReady;
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  return {
    driver: 'pglite',
    location: dataDir === null ? 'memory' : resolve(dataDir),
    db,
    async listen(channel, onPayload, onListen) {
      const unsubscribe = await client.listen(channel, onPayload);
      onListen?.();
      return unsubscribe;
    },
    async migrate() {
      // PGlite is one connection in this process; the lock still guards against a second
      // process, which PGlite's own file lock refuses anyway.
      await client.query(`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`);
      try {
        await migratePglite(drizzlePglite(client), { migrationsFolder });
      } finally {
        await client.query(`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`);
      }
    },
    isReady: () => migrationsApplied(db),
    async close() {
      await client.close();
    },
  };
}

export async function connectDatabase(options: { databaseUrl: string | null; dataDir: string }): Promise<Database> {
  return options.databaseUrl === null ? connectPglite(resolve(options.dataDir, 'pglite')) : connectPostgres(options.databaseUrl);
}
