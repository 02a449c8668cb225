import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, pipeline, queryRows, rowsOf } from '../src/db/database.ts';
import type { Database } from '../src/db/database.ts';
import { createEmptyPostgresDatabase, POSTGRES_ONLY, serverUrl } from './support/database.ts';

/*
 * Prepared statements meet a schema change (a rolling deploy's migration changing a column's type
 * under running instances). postgres.js used to send such a statement again behind the queries
 * already pipelined on its connection, whose answers could then reach the wrong queries, or leave
 * a transaction's connection hanging. Patched (patches/postgres+3.4.9.patch), the statement fails
 * once with the server's error and runs prepared anew next time; nothing behind it is disturbed;
 * and a transaction's own BEGIN, COMMIT and ROLLBACK are never prepared, so they cannot be lost.
 */

let empty: { url: string; drop(): Promise<void> } | null = null;
let admin: postgres.Sql;
let database: Database;

const codeOf = (error: unknown): string | undefined => {
  for (let e = error; e instanceof Error; e = e.cause) if ('code' in e && typeof e.code === 'string') return e.code;
  return undefined;
};

describe.skipIf(serverUrl === null)('prepared statements when a column changes type under them', POSTGRES_ONLY, () => {
  beforeAll(async () => {
    empty = await createEmptyPostgresDatabase();
    if (empty === null) throw new Error('unreachable: DATABASE_URL is set');
    admin = postgres(empty.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create table secrets_a (id int primary key, secret int); insert into secrets_a values (1, 111);
                        create table notes_b (id int primary key, note text); insert into notes_b values (1, 'tenant B row')`);
    // One connection, so that every query below shares it (pipelined when sent together).
    database = connectPostgres(empty.url, { max: 1 });
  });
  afterAll(async () => {
    await database?.close();
    await admin?.end();
    await empty?.drop();
  });

  const readA = () => queryRows<{ secret: unknown }>(database.db, sql`select secret from secrets_a where id = ${1}`);
  const readB = () => queryRows<{ note: string }>(database.db, sql`select note from notes_b where id = ${1}`);

  it('outside a transaction: the changed statement fails alone, the query behind it gets its own answer, the next run works', async () => {
    // Used often enough to be prepared on the connection.
    for (let i = 0; i < 3; i += 1) await Promise.all([readA(), readB()]);
    await admin.unsafe('alter table secrets_a alter column secret type bigint');
    const [a, b] = await Promise.allSettled([readA(), readB()]);
    expect(a.status === 'rejected' && codeOf(a.reason)).toBe('0A000');
    expect(b).toEqual({ status: 'fulfilled', value: [{ note: 'tenant B row' }] });
    expect(await readA()).toEqual([{ secret: '111' }]);
    expect(await readB()).toEqual([{ note: 'tenant B row' }]);
  });

  it('in a transaction’s pipeline: the server’s error is the one thrown, and the connection serves the next query', async () => {
    const pipelined = () =>
      database.db.transaction((tx) =>
        pipeline(tx.execute(sql`select secret from secrets_a where id = ${1}`), tx.execute(sql`select note from notes_b where id = ${1}`)),
      );
    for (let i = 0; i < 3; i += 1) await pipelined();
    await admin.unsafe('alter table secrets_a alter column secret type int');
    const failed = await pipelined().then(
      () => null,
      (error: unknown) => error,
    );
    expect(codeOf(failed)).toBe('0A000');
    // The one connection is free again (not left in an aborted transaction), and the statement works anew.
    const [secret, note] = await pipelined();
    expect(rowsOf(secret)).toEqual([{ secret: 111 }]);
    expect(rowsOf(note)).toEqual([{ note: 'tenant B row' }]);
  });
  it('when the server forgets every prepared statement, each fails once, cleanly, and the connection goes on', async () => {
    const write = (note: string) =>
      database.db.transaction(async (tx) => {
        await tx.execute(
          sql`insert into notes_b (id, note) values (${note.length + 100}, ${note}) on conflict (id) do update set note = excluded.note`,
        );
        return queryRows<{ note: string }>(tx, sql`select note from notes_b where id = ${note.length + 100}`);
      });
    // Prepared on the one connection: the two statements (the driver's own COMMIT is never prepared).
    for (let i = 0; i < 3; i += 1) await write('warm');
    await database.db.execute(sql`deallocate all`);
    // Each forgotten statement fails once with the server's error, and is prepared anew next time:
    // two statements, so the third attempt at the latest commits. A hang would fail the test.
    const failures: (string | undefined)[] = [];
    let written: { note: string }[] | null = null;
    for (let attempt = 0; attempt < 3 && written === null; attempt += 1) {
      written = await write('after').catch((error: unknown) => {
        failures.push(codeOf(error));
        return null;
      });
    }
    expect(written).toEqual([{ note: 'after' }]);
    expect(failures.every((code) => code === '26000')).toBe(true);
    const [committed] = await admin`select note from notes_b where id = ${'after'.length + 100}`;
    expect(committed?.note).toBe('after');
    expect(await readB()).toEqual([{ note: 'tenant B row' }]);
  });
});
