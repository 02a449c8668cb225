import { PgDialect } from 'drizzle-orm/pg-core';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tailRead } from '../../src/pubsub/change-log.ts';
import { createTestDatabase, POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/*
 * Every live reader reads the change log's tail after every commit it hears of: that read must cost
 * the same whatever the log holds (a day of changes by default). Its plan, on a log of 50,000
 * changes, walks the primary key only; an EXISTS it once had was planned as a scan of the whole log.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

describe.skipIf(serverUrl === null)('the change log’s tail read on PostgreSQL', POSTGRES_ONLY, () => {
  it('reads through the primary key: no sequential scan of task_changes, whatever the log holds', async () => {
    const client = postgres(database.url!, { max: 1, onnotice: () => {} });
    try {
      // Positions around the horizon, where a live log's newest changes are (here just past it, so
      // that the planner sees many rows at or after it: what made it scan the log for the EXISTS).
      await client`
        insert into task_changes (txid, seq, tenant_id, task_id, version, task) overriding system value
        select pg_current_xact_id()::text::bigint + 1000 + g / 10, g, gen_random_uuid(), gen_random_uuid(), 1, '{}'::jsonb
        from generate_series(1, 50000) g`;
      await client`analyze task_changes`;
      const dialect = new PgDialect();
      for (const after of [
        { txid: 0n, seq: 0n },
        { txid: 5000n, seq: 40000n },
      ]) {
        const query = dialect.sqlToQuery(tailRead(after, 1000));
        const plan = JSON.stringify(await client.unsafe(`explain (format json) ${query.sql}`, query.params as never[]));
        expect(plan, plan).not.toContain('Seq Scan');
        expect(plan, plan).toContain('task_changes_txid_seq_pk');
      }
    } finally {
      await client.end();
    }
  });
});
