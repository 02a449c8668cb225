import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { appendChange, createChangeLog, positionNow } from '../../src/pubsub/change-log.ts';
import type { ChangeLog, ChangePosition } from '../../src/pubsub/change-log.ts';
import { createTestDatabase, insertTaskRows, insertTenantRow } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * The retention job deletes the log's oldest changes in batches and remembers how far it got, so
 * that a client resuming from a cursor inside the deleted part is told to list again rather than
 * silently missing changes.
 */

const ORIGIN: ChangePosition = { txid: 0n, seq: 0n };
const HOUR = 3_600;

let database: TestDatabase;
let log: ChangeLog;
let taskIds: string[];

beforeAll(async () => {
  database = await createTestDatabase();
  taskIds = await insertTaskRows(database.db, await insertTenantRow(database.db, 'Pruned'), { status: 'SUBMITTED', count: 5 });
  log = await createChangeLog(database, createLogger('silent'));
});
afterAll(async () => {
  await log?.close();
  await database?.drop();
});

/** Changes each task in a transaction of its own: one logged change each, in task order. */
async function changeEachTask(): Promise<void> {
  for (const id of taskIds) {
    await database.db.transaction(async (tx) => {
      await tx.execute(
        sql`update omni_tasks set version = version + 1, change_txid = ${positionNow.txid}, change_seq = ${positionNow.seq}
            where id = ${id}`,
      );
      await appendChange(tx, id);
    });
  }
}

async function positions(): Promise<ChangePosition[]> {
  const rows = await queryRows<{ txid: string; seq: string }>(
    database.db,
    sql`select txid::text as txid, seq::text as seq from task_changes order by task_changes.txid, task_changes.seq`,
  );
  return rows.map((row) => ({ txid: BigInt(row.txid), seq: BigInt(row.seq) }));
}

async function marker(): Promise<string | null> {
  const rows = await queryRows<{ value: string }>(database.db, sql`select value from settings where key = 'change_log_pruned_through'`);
  return rows[0]?.value ?? null;
}

describe('change-log retention (prune)', () => {
  it('deletes nothing and marks nothing while no change is past the retention', async () => {
    await changeEachTask();
    expect(await log.prune(HOUR)).toBe(0);
    expect(await positions()).toHaveLength(5);
    expect(await marker()).toBeNull();
    expect(await log.isExpired(ORIGIN)).toBe(false);
  });

  it('deletes the oldest changes first, up to its batch, and marks the last one deleted', async () => {
    const [first, second, third, fourth, fifth] = await positions();
    // The first four changes are two hours old; the fifth is new.
    await database.db.execute(
      sql`update task_changes set created_at = now() - interval '2 hours'
          where (txid, seq) <= (${fourth!.txid.toString()}::bigint, ${fourth!.seq.toString()}::bigint)`,
    );

    expect(await log.prune(HOUR, 3)).toBe(3);
    expect(await positions()).toEqual([fourth, fifth]);
    expect(await marker()).toBe(`${third!.txid}.${third!.seq}`);
    // A cursor before the marker may have missed deleted changes; one at the marker has missed none.
    expect(await log.isExpired(ORIGIN)).toBe(true);
    expect(await log.isExpired(second!)).toBe(true);
    expect(await log.isExpired(third!)).toBe(false);
    expect(await log.isExpired(fourth!)).toBe(false);
    expect(first).toBeDefined();

    // The next batch takes the rest of what is old, and the new change stays.
    expect(await log.prune(HOUR, 3)).toBe(1);
    expect(await positions()).toEqual([fifth]);
    expect(await marker()).toBe(`${fourth!.txid}.${fourth!.seq}`);
    expect(await log.isExpired(third!)).toBe(true);
    expect(await log.isExpired(fourth!)).toBe(false);
  });

  it('leaves the marker where it was when a later run finds nothing old', async () => {
    const before = await marker();
    expect(before).not.toBeNull();
    expect(await log.prune(HOUR)).toBe(0);
    expect(await marker()).toBe(before);
    expect(await positions()).toHaveLength(1);
  });
});
