import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { count, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipeline, queryRows, rowsOf } from '../src/db/database.ts';
import { settings } from '../src/db/schema.ts';
import { createStatementPolicy } from '../src/db/statements.ts';
import { createTestDatabase } from './support/database.ts';
import type { TestDatabase } from './support/database.ts';

/*
 * The create path sends a transaction's statements in pipelines (database.ts): each must run in
 * the order given, seeing what the ones before it wrote, on PGlite and on PostgreSQL (where the
 * queries also go through the statement policy, prepared or not).
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

describe('pipeline', () => {
  it('runs a transaction’s queries in the order given, each seeing the writes before it, builders and raw SQL alike', async () => {
    const { db } = database;
    // Many rounds, so that new texts (described first) and prepared ones (sent at once) both occur.
    for (let round = 0; round < 12; round += 1) {
      const key = `pipeline-${round}`;
      const [inserted, raw, counted, updated, read] = await db.transaction((tx) =>
        pipeline(
          tx.insert(settings).values({ key, value: 'a' }).returning({ value: settings.value }),
          tx.execute(sql`select value from settings where key = ${key}`),
          tx.select({ n: count() }).from(settings).where(eq(settings.key, key)),
          tx.update(settings).set({ value: 'b' }).where(eq(settings.key, key)).returning({ value: settings.value }),
          tx.execute(sql`select value from settings where key = ${key}`),
        ),
      );
      expect(inserted).toEqual([{ value: 'a' }]);
      expect(rowsOf(raw)).toEqual([{ value: 'a' }]);
      expect(counted).toEqual([{ n: 1 }]);
      expect(updated).toEqual([{ value: 'b' }]);
      expect(rowsOf(read)).toEqual([{ value: 'b' }]);
    }
  });

  it('throws the first failing query’s error, and the transaction leaves nothing written', async () => {
    const { db } = database;
    const attempt = db.transaction((tx) =>
      pipeline(
        tx.insert(settings).values({ key: 'pipeline-failed', value: 'x' }),
        tx.execute(sql`select 1 / 0`),
        tx.insert(settings).values({ key: 'pipeline-after', value: 'y' }),
      ),
    );
    const error = await attempt.then(
      () => null,
      (thrown: unknown) => thrown,
    );
    // The driver's error, possibly wrapped by drizzle ("Failed query: …", the cause within).
    const messages: string[] = [];
    for (let e = error; e instanceof Error; e = e.cause) messages.push(e.message);
    expect(messages.join(' / ')).toMatch(/division by zero/);
    expect(messages.join(' / ')).not.toMatch(/aborted/);
    const rows = await queryRows(db, sql`select key from settings where key in ('pipeline-failed', 'pipeline-after')`);
    expect(rows).toEqual([]);
  });
});

describe('statement policy', () => {
  it('prepares a text from its second use, and no more than its bound of texts', () => {
    const policy = createStatementPolicy({ maxTexts: 2 });
    expect(policy.prepare('a')).toBe(false);
    expect(policy.prepare('a')).toBe(true);
    expect(policy.prepare('a')).toBe(true);
    expect(policy.prepare('b')).toBe(false);
    expect(policy.prepare('b')).toBe(true);
    expect(policy.prepare('c')).toBe(false);
    // The bound is reached: a third text stays unprepared however often it comes.
    expect(policy.prepare('c')).toBe(false);
    expect(policy.prepare('c')).toBe(false);
    expect(policy.preparedTexts).toBe(2);
    expect(policy.prepare('b')).toBe(true);
  });

  it('forgets texts seen once when too many were, so that memory stays bounded', () => {
    const policy = createStatementPolicy({ maxTexts: 10, seenBound: 3 });
    for (const text of ['x', 'y', 'z']) policy.prepare(text);
    // The seen set is full: 'w' clears it, so 'x' counts as new again.
    policy.prepare('w');
    expect(policy.prepare('x')).toBe(false);
    expect(policy.prepare('w')).toBe(true);
  });
});

describe('the patched driver', () => {
  it('is the one Node loads: postgres.js with patches/postgres+3.4.9.patch applied (npm ci applies it)', async () => {
    const index = fileURLToPath(import.meta.resolve('postgres'));
    const [entry, connection] = await Promise.all([readFile(index, 'utf8'), readFile(join(dirname(index), 'connection.js'), 'utf8')]);
    // Unpatched, a statement the server rejects is re-sent behind the queries pipelined after it,
    // and a transaction's COMMIT is a prepared statement (test/db-prepared-change.test.ts).
    expect(connection).toMatch(/function retry\(q, error\) \{[^}]*delete statements\[q\.signature\]\s*errored\(error\)/);
    expect(entry).toContain("await sql.unsafe('commit')");
    expect(entry).toContain("sql.unsafe('rollback')");
  });
});
