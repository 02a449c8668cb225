import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createTaskStateMachine } from '../../src/tasks/state.ts';
import { createTestDatabase, insertTaskRows, insertTenantRow, POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/*
 * A task's changes sit in the change log in (transaction id, sequence) order, and a transaction's id
 * is taken at its first write. A transaction that took its id early, then changes a task that a
 * later transaction changed and committed meanwhile, would log its change BEFORE that one: readers
 * would see the task's versions out of order. The state machine refuses such a write and runs the
 * whole transaction again, with a new, larger id. Needs two connections at once: PostgreSQL only.
 */

let database: TestDatabase;
beforeAll(async () => {
  if (serverUrl !== null) database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

const NO_HOOKS = { onSucceeded: [], onFailed: [] };

describe.skipIf(serverUrl === null)('a change that would sort before one already logged', POSTGRES_ONLY, () => {
  it('is not written; the transaction runs again and its change lands after the other, versions in order', async () => {
    const db = database.db;
    const taskId = (await insertTaskRows(db, await insertTenantRow(db, 'Ordered'), { status: 'SUBMITTED' }))[0]!;
    let committed = 0;
    const state = createTaskStateMachine({ finalStateHooks: NO_HOOKS, onCommitted: () => (committed += 1) });

    const attempts: bigint[] = [];
    const outcome = await state.commit(db, async (tx) => {
      // This transaction takes its id now, by a write of its own (to a table the task's row has no key in common with).
      const [own] = await queryRows<{ txid: string }>(
        tx,
        sql`insert into settings (key, value) values (${`change-order-${attempts.length + 1}`}, 'written')
            returning pg_current_xact_id()::text as txid`,
      );
      attempts.push(BigInt(own!.txid));
      if (attempts.length === 1) {
        // Meanwhile a later transaction moves the task on and commits.
        const other = await state.commit(db, (other) => state.transition(other, taskId, { status: 'PROCESSING', source: 'callback' }));
        expect(other?.changed).toBe(true);
      }
      return state.transition(tx, taskId, { status: 'SUCCEEDED', source: 'poll', videos: [] });
    });

    expect(outcome?.changed).toBe(true);
    // Refused once (its id was older than the logged change), then run again with a newer id.
    expect(attempts).toHaveLength(2);
    expect(attempts[1]! > attempts[0]!).toBe(true);
    expect(committed).toBe(2);
    const log = await queryRows<{ version: number; status: string; txid: string }>(
      db,
      sql`select c.version, c.task->>'status' as status, c.txid::text as txid from task_changes c where c.task_id = ${taskId} order by c.txid, c.seq`,
    );
    expect(log.map((row) => [row.version, row.status])).toEqual([
      [2, 'PROCESSING'],
      [3, 'SUCCEEDED'],
    ]);
    expect(BigInt(log[1]!.txid)).toBe(attempts[1]);
    // The refused attempt left nothing of its own write; the second attempt's stands.
    const written = await queryRows<{ key: string }>(db, sql`select key from settings where key like 'change-order-%'`);
    expect(written.map((row) => row.key)).toEqual(['change-order-2']);
  });

  it('gives up after five refusals with the conflict itself, writing nothing', async () => {
    const db = database.db;
    const taskId = (await insertTaskRows(db, await insertTenantRow(db, 'Contended'), { status: 'SUBMITTED' }))[0]!;
    const state = createTaskStateMachine({ finalStateHooks: NO_HOOKS });
    let attempts = 0;
    const failed = state
      .commit(db, async (tx) => {
        attempts += 1;
        await tx.execute(sql`select pg_current_xact_id()`);
        // Every attempt is overtaken by a later transaction that changes the task first.
        await db.execute(sql`update omni_tasks set change_txid = pg_current_xact_id()::text::bigint + 1000000 where id = ${taskId}`);
        return state.transition(tx, taskId, { status: 'PROCESSING', source: 'callback' });
      })
      .catch((error: unknown) => error);
    const error = await failed;
    expect((error as Error).name).toBe('ChangeOrderConflict');
    expect(attempts).toBe(5);
    const [stored] = await queryRows<{ status: string; version: number }>(
      db,
      sql`select status, version from omni_tasks where id = ${taskId}`,
    );
    expect(stored).toEqual({ status: 'SUBMITTED', version: 1 });
  });
});
