import { randomBytes } from 'node:crypto';
import { openAsBlob } from 'node:fs';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { inject } from 'vitest';
import { connectPglite, connectPostgres, queryRows } from '../../src/db/database.ts';
import type { Database, Executor } from '../../src/db/database.ts';

export const serverUrl = process.env.DATABASE_URL || null;

/**
 * Options of a PostgreSQL-only suite or test (`describe.skipIf(serverUrl === null)(name, POSTGRES_ONLY, fn)`):
 * the `postgres` tag, by which test/support/postgres-only-reporter.ts counts the ones a run without
 * DATABASE_URL skipped, and `--tags-filter=postgres` runs only them.
 */
export const POSTGRES_ONLY = { tags: ['postgres'] };

export type TestDatabase = Database & { url: string | null; drop(): Promise<void> };

/** A fresh database for one test file: a new PostgreSQL database when DATABASE_URL is set, else in-memory PGlite. */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (serverUrl === null) {
    // From the migrated dump of the global setup (pglite-snapshot.ts) when there is one.
    const snapshot = inject('pgliteSnapshot');
    const database = await connectPglite(null, snapshot ? { loadDataDir: await openAsBlob(snapshot) } : {});
    await database.migrate();
    return Object.assign(database, { url: null, drop: () => database.close() });
  }
  const empty = await createEmptyPostgresDatabase();
  if (empty === null) throw new Error('unreachable: DATABASE_URL is set');
  const database = connectPostgres(empty.url);
  await database.migrate();
  return Object.assign(database, {
    url: empty.url,
    async drop() {
      await database.close().catch(() => {});
      await empty.drop();
    },
  });
}

/** An empty PostgreSQL database that is not migrated yet (for migration tests); null without DATABASE_URL. */
export async function createEmptyPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> } | null> {
  if (serverUrl === null) return null;
  const name = `og_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const cleanup = postgres(serverUrl, { max: 1, onnotice: () => {} });
      await cleanup.unsafe(`drop database if exists ${name} with (force)`);
      await cleanup.end();
    },
  };
}

/** Inserts a bare tenant row (no key, no limits) for tests of what the database keeps; returns its id. */
export async function insertTenantRow(db: Executor, name: string): Promise<string> {
  const [row] = await queryRows<{ id: string }>(db, sql`insert into tenants (name) values (${name}) returning id`);
  if (row === undefined) throw new Error('insert into tenants returned no row');
  return row.id;
}

/**
 * Inserts `count` bare task rows of a tenant straight into omni_tasks (version 1, no change logged):
 * for tests of what the database keeps about tasks, not of creating them. Returns their ids.
 */
export async function insertTaskRows(db: Executor, tenantId: string, options: { status: string; count?: number }): Promise<string[]> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`insert into omni_tasks (id, tenant_id, status, prompt, model_name, mode, aspect_ratio, duration_seconds, has_video_input,
                                request, request_hash, deadline_at)
        select gen_random_uuid(), ${tenantId}, ${options.status}, 'inserted ' || g, 'kling-video-o1', 'STD', 'RATIO_16_9', 5, false,
               '{}', md5(random()::text), now() + interval '1 hour'
        from generate_series(1, ${options.count ?? 1}) g returning id`,
  );
  return rows.map((row) => row.id);
}
