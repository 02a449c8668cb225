import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { createLogger } from '../../src/logger.ts';
import { appendChange, createChangeLog, createCursorCodec, positionNow } from '../../src/pubsub/change-log.ts';
import type { ChangeLog, LoggedChange } from '../../src/pubsub/change-log.ts';
import { createTaskReads } from '../../src/tasks/reads.ts';
import type { TaskRow } from '../../src/tasks/state.ts';
import { createWatchService } from '../../src/tasks/watch.ts';
import { createTestDatabase, insertTaskRows } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * A task subscription attaches to the live log before it reads the task, so that a change in
 * between is not lost; the change then reaches it twice, in the read and live. Here the change
 * lands in that window on purpose (the read waits until the live tail has delivered it), and the
 * subscriber must see each version once.
 */

let database: TestDatabase;
let log: ChangeLog;
let tenantId: string;

beforeAll(async () => {
  database = await createTestDatabase();
  const [tenant] = await queryRows<{ id: string }>(database.db, sql`insert into tenants (name) values ('Watcher') returning id`);
  tenantId = tenant!.id;
  log = await createChangeLog(database, createLogger('silent'), { pollMs: 20 });
});
afterAll(async () => {
  await log?.close();
  await database?.drop();
});

/** Moves the task on by one version, logs the change, and resolves once the live tail has delivered it. */
async function changeAndDeliver(taskId: string, status: string): Promise<void> {
  const delivered = new Promise<void>((resolve) => {
    const stop = log.listen((changes: LoggedChange[]) => {
      if (!changes.some((change) => change.taskId === taskId && change.task.status === status)) return;
      stop();
      resolve();
    });
  });
  await database.db.transaction(async (tx) => {
    await tx.execute(
      sql`update omni_tasks set status = ${status}, version = version + 1,
            change_txid = ${positionNow.txid}, change_seq = ${positionNow.seq} where id = ${taskId}`,
    );
    await appendChange(tx, taskId);
  });
  log.wake();
  await delivered;
}

async function take(stream: AsyncIterable<TaskRow>, count: number): Promise<{ status: string; version: number }[]> {
  const seen: { status: string; version: number }[] = [];
  for await (const task of stream) {
    seen.push({ status: task.status, version: task.version });
    if (seen.length === count) break;
  }
  return seen;
}

describe('a task subscription and a change between its attach and its read', () => {
  it('sees the read state once, then each later change once, ending at the final state', async () => {
    const [taskId] = await insertTaskRows(database.db, tenantId, { status: 'SUBMITTED' });
    const reads = createTaskReads(database.db);
    const watch = createWatchService({
      log,
      // The read comes after the change is logged and delivered live: the subscriber has it twice.
      tasks: {
        byId: async (tenant: string, id: string) => {
          await changeAndDeliver(id, 'PROCESSING');
          return reads.byId(tenant, id);
        },
      },
      cursors: createCursorCodec('watch-window-secret'),
      logger: createLogger('silent'),
    });

    const stream = await watch.task(tenantId, taskId!);
    await changeAndDeliver(taskId!, 'SUCCEEDED');
    // At most four are read: a repeat of version 2 would show as a third item.
    const seen = await take(stream, 4);
    expect(seen).toEqual([
      { status: 'PROCESSING', version: 2 },
      { status: 'SUCCEEDED', version: 3 },
    ]);
    expect(watch.size()).toBe(0);
  });
});
