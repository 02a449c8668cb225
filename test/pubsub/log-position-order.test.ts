import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { appendChange, createChangeLog, positionNow, readChangesAfter } from '../../src/pubsub/change-log.ts';
import type { ChangePosition, LoggedChange } from '../../src/pubsub/change-log.ts';
import { createTestDatabase, insertTaskRows, insertTenantRow } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * Positions are (transaction id, sequence) pairs of bigints; the log is read in their numeric
 * order. One transaction that logs several changes gives them one transaction id and consecutive
 * sequence numbers, here 8 to 14, across a power of ten: read as text, 10 to 14 would sort before
 * 8 and 9, and a reader paging through the log would skip or repeat changes, and a replay would
 * take seq 9 for a task's latest change over seq 10.
 */

const TASKS = 6;
/** The tasks the transaction changes, in order (by index): the first task twice, at seq 9 and 10. */
const CHANGED = [1, 0, 0, 2, 3, 4, 5];
const ORIGIN: ChangePosition = { txid: 0n, seq: 0n };

let database: TestDatabase;
let tenantId: string;
let taskIds: string[];

const key = (position: ChangePosition) => `${position.txid}.${position.seq}`;

beforeAll(async () => {
  database = await createTestDatabase();
  tenantId = await insertTenantRow(database.db, 'Ordered');
  taskIds = await insertTaskRows(database.db, tenantId, { status: 'SUBMITTED', count: TASKS });
});
afterAll(async () => {
  await database?.drop();
});

/** Changes the tasks of CHANGED in ONE transaction, the sequence set so that its positions run from seq 8 to 14. */
async function changeAllInOneTransaction(): Promise<void> {
  await database.db.execute(sql`select setval('task_changes_seq_seq', 7)`);
  await database.db.transaction(async (tx) => {
    for (const index of CHANGED) {
      const id = taskIds[index]!;
      await tx.execute(
        sql`update omni_tasks set status = 'PROCESSING', version = version + 1,
              change_txid = ${positionNow.txid}, change_seq = ${positionNow.seq} where id = ${id}`,
      );
      await appendChange(tx, id);
    }
  });
}

describe('change-log positions across a power of ten in one transaction (seq 8 to 14)', () => {
  it('the live tail, paging two at a time, delivers each change once in position order; replay and the head agree', async () => {
    const log = await createChangeLog(database, createLogger('silent'), { batchSize: 2, pollMs: 20 });
    try {
      const delivered: LoggedChange[] = [];
      let arrived: () => void = () => {};
      // Bounded: a reader that skips changes never delivers them all.
      const all = new Promise<void>((resolve, reject) => {
        arrived = resolve;
        setTimeout(() => reject(new Error(`delivered only seqs ${delivered.map((c) => c.position.seq)}`)), 5_000).unref();
      });
      log.listen((changes) => {
        delivered.push(...changes);
        if (delivered.length >= CHANGED.length) arrived();
      });
      await changeAllInOneTransaction();
      log.wake();
      await all;

      const seqs = delivered.map((change) => Number(change.position.seq));
      expect(seqs).toEqual([8, 9, 10, 11, 12, 13, 14]);
      expect(delivered.map((change) => change.taskId)).toEqual(CHANGED.map((index) => taskIds[index]));
      expect(key(log.head())).toBe(key(delivered.at(-1)!.position));

      // Paging by hand, as the outbound-webhook dispatcher does: two at a time from the start.
      const paged: string[] = [];
      let after = ORIGIN;
      for (let page = 0; page < CHANGED.length; page += 1) {
        const { changes } = await readChangesAfter(database.db, after, 2);
        if (changes.length === 0) break;
        paged.push(...changes.map((change) => key(change.position)));
        after = changes.at(-1)!.position;
      }
      expect(paged).toEqual(delivered.map((change) => key(change.position)));

      // Replay from before the transaction: each task's latest change, in position order.
      const replayed = await log.replay(tenantId, ORIGIN, log.head());
      expect(replayed.map((change) => Number(change.position.seq))).toEqual([8, 10, 11, 12, 13, 14]);
      expect(replayed.map((change) => change.version)).toEqual([2, 3, 2, 2, 2, 2]);
    } finally {
      await log.close();
    }

    // A log started now begins at the numerically last readable position, not the last as text.
    const restarted = await createChangeLog(database, createLogger('silent'));
    try {
      expect(Number(restarted.head().seq)).toBe(14);
    } finally {
      await restarted.close();
    }
  });
});
