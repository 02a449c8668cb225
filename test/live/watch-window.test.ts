import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { appendChange, createChangeLog, createCursorCodec, positionNow } from '../../src/pubsub/change-log.ts';
import type { ChangeLog, LoggedChange } from '../../src/pubsub/change-log.ts';
import { AppError, NotFoundError } from '../../src/errors.ts';
import { createTaskReads } from '../../src/tasks/reads.ts';
import type { TaskRow } from '../../src/tasks/state.ts';
import { createWatchService } from '../../src/tasks/watch.ts';
import { createTestDatabase, insertTaskRows, insertTenantRow } from '../support/database.ts';
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
  tenantId = await insertTenantRow(database.db, 'Watcher');
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

/**
 * A watch service on the real log and reads. The hooks open the windows under test: `beforeRead` and
 * `afterRead` run around each task read (the read's answer is handed back after `afterRead`), and
 * `afterReplay` runs after a resume's replay is read, before it is handed back; `tail` stands in for
 * the log's live tail (its head and its listeners).
 */
function watchService(
  hooks: { beforeRead?: Hook; afterRead?: Hook; afterReplay?: () => Promise<void>; tail?: Pick<ChangeLog, 'head' | 'listen'> } = {},
) {
  const reads = createTaskReads(database.db);
  return createWatchService({
    log: {
      ...log,
      ...hooks.tail,
      async replay(tenant, after, upTo) {
        const replayed = await log.replay(tenant, after, upTo);
        await hooks.afterReplay?.();
        return replayed;
      },
    },
    tasks: {
      byId: async (tenant: string, id: string) => {
        await hooks.beforeRead?.(id);
        const task = await reads.byId(tenant, id);
        await hooks.afterRead?.(id);
        return task;
      },
    },
    cursors: createCursorCodec('watch-window-secret'),
    logger: createLogger('silent'),
  });
}

type Hook = (taskId: string) => Promise<void>;

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
    // The read comes after the change is logged and delivered live: the subscriber has it twice.
    const watch = watchService({ beforeRead: (id) => changeAndDeliver(id, 'PROCESSING') });

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

  it('delivers a change that lands after the read but before the subscription has its answer', async () => {
    const [taskId] = await insertTaskRows(database.db, tenantId, { status: 'SUBMITTED' });
    // The read sees version 1; the change to version 2 reaches the subscriber while the read is on its way back.
    const watch = watchService({ afterRead: (id) => changeAndDeliver(id, 'PROCESSING') });
    const stream = await watch.task(tenantId, taskId!);
    await changeAndDeliver(taskId!, 'SUCCEEDED');
    expect(await take(stream, 4)).toEqual([
      { status: 'SUBMITTED', version: 1 },
      { status: 'PROCESSING', version: 2 },
      { status: 'SUCCEEDED', version: 3 },
    ]);
    expect(watch.size()).toBe(0);
  });
});

describe('the watch service keeps no subscription it does not serve', () => {
  it("a task that is not the tenant's is NOT_FOUND and holds no slot", async () => {
    const watch = watchService();
    await expect(watch.task(tenantId, '00000000-0000-4000-8000-000000000000')).rejects.toBeInstanceOf(NotFoundError);
    expect(watch.size()).toBe(0);
  });

  it('a subscription whose request was already aborted ends at once and holds no slot', async () => {
    const [taskId] = await insertTaskRows(database.db, tenantId, { status: 'SUBMITTED' });
    const watch = watchService();
    const aborted = AbortSignal.abort();
    expect(await take(await watch.task(tenantId, taskId!, aborted), 1)).toEqual([]);
    expect(await take(await watch.tenant(tenantId, null, aborted), 1)).toEqual([]);
    expect(watch.size()).toBe(0);
  });

  it('close() ends every task and tenant subscription', async () => {
    const [taskId] = await insertTaskRows(database.db, tenantId, { status: 'SUBMITTED' });
    const watch = watchService();
    const forTask = await watch.task(tenantId, taskId!);
    const forTenant = await watch.tenant(tenantId, null);
    expect(watch.size()).toBe(2);
    watch.close();
    expect(await take(forTask, 2)).toEqual([{ status: 'SUBMITTED', version: 1 }]);
    expect(await take(forTenant, 1)).toEqual([]);
    expect(watch.size()).toBe(0);
  });

  it('a cursor it did not give out is refused as bad input', () => {
    const watch = watchService();
    for (const cursor of ['', 'garbage', 'c1_AAAA']) {
      let refused: unknown = null;
      try {
        watch.parseCursor(cursor);
      } catch (error) {
        refused = error;
      }
      expect(refused, cursor).toBeInstanceOf(AppError);
      expect((refused as AppError).extensions.code, cursor).toBe('BAD_USER_INPUT');
      expect((refused as AppError).message, cursor).toBe('This is not a changeCursor the gateway gave out.');
    }
  });
});

describe('a tenant subscription that does not read', () => {
  it('is ended with SUBSCRIPTION_OVERFLOW at the change past the 10,000 it holds, after those 10,000', async () => {
    const slow = await insertTenantRow(database.db, 'Slow reader');
    await insertTaskRows(database.db, slow, { status: 'SUBMITTED', count: 10_001 });
    const watch = watchService();
    const stream = await watch.tenant(slow, null);
    const delivered = new Promise<void>((resolve) => {
      let seen = 0;
      const stop = log.listen((changes: LoggedChange[]) => {
        seen += changes.filter((change) => change.tenantId === slow).length;
        if (seen < 10_001) return;
        stop();
        resolve();
      });
    });
    // 10,001 changes in one transaction, none read by the subscriber until all are delivered.
    await database.db.transaction(async (tx) => {
      await tx.execute(
        sql`update omni_tasks set version = version + 1, change_txid = ${positionNow.txid}, change_seq = ${positionNow.seq}
            where tenant_id = ${slow}`,
      );
      await tx.execute(
        sql`insert into task_changes (txid, seq, tenant_id, task_id, version, task) overriding system value
            select t.change_txid, t.change_seq, t.tenant_id, t.id, t.version, to_jsonb(t) from omni_tasks t where t.tenant_id = ${slow}`,
      );
    });
    log.wake();
    await delivered;

    let items = 0;
    let ending: unknown = null;
    try {
      for await (const _ of stream) items += 1;
    } catch (error) {
      ending = error;
    }
    expect(items).toBe(10_000);
    expect(ending).toBeInstanceOf(AppError);
    expect((ending as AppError).extensions.code).toBe('SUBSCRIPTION_OVERFLOW');
    // The error is given once: the stream is then over.
    await expect(stream[Symbol.asyncIterator]().next()).resolves.toEqual({ value: undefined, done: true });
    expect(watch.size()).toBe(0);
  });
});

describe('a tenant subscription resumed from a cursor', () => {
  it('replays what changed while away, then the change made during the replay, then live changes, each once and in order', async () => {
    const resumer = await insertTenantRow(database.db, 'Resumer');
    const [first, second] = await insertTaskRows(database.db, resumer, { status: 'SUBMITTED', count: 2 });
    await changeAndDeliver(first!, 'PROCESSING');
    const cursor = log.head();
    // While the client is away: the second task moves on.
    await changeAndDeliver(second!, 'PROCESSING');
    // The first task finishes while the replay is being read: it reaches the subscriber live, held until the replay is out.
    const watch = watchService({ afterReplay: () => changeAndDeliver(first!, 'SUCCEEDED') });
    const stream = await watch.tenant(resumer, cursor);
    await changeAndDeliver(second!, 'SUCCEEDED');
    const seen: string[] = [];
    for await (const task of stream) {
      seen.push(`${task.id === first ? 'first' : 'second'} ${task.status} v${task.version}`);
      if (seen.length === 3) break;
    }
    expect(seen).toEqual(['second PROCESSING v2', 'first SUCCEEDED v3', 'second SUCCEEDED v3']);
  });
});

describe('a tenant subscription resumed on an instance whose tail is behind the cursor', () => {
  // A KNOWN BUG, left open on purpose: this instance sends the changes up to the cursor again (here
  // PROCESSING v2, which the client already has) once its tail catches up. Dropping every live change
  // at or before the cursor fixes this case but loses changes when the cursor was read from a task
  // row (a query or mutation result) while an older transaction of the tenant was still open: that
  // change sorts before the cursor yet commits after it. A fix has to tell a cursor of the
  // tenant-wide feed (everything before it was delivered) from a cursor read off a row.
  it.fails('never sends a change at or before the cursor when that tail catches up, only the ones after it', async () => {
    const resumer = await insertTenantRow(database.db, 'Elsewhere');
    const [taskId] = await insertTaskRows(database.db, resumer, { status: 'SUBMITTED', count: 1 });
    // This instance's tail: held back by hand, at the head it had before the task moved on.
    const lagging: LoggedChange[] = [];
    const stopHolding = log.listen((changes: LoggedChange[]) => void lagging.push(...changes));
    let deliver: (changes: LoggedChange[]) => void = () => {};
    let head = log.head();
    const watch = watchService({
      tail: {
        head: () => head,
        listen(listener) {
          deliver = listener;
          return () => {};
        },
      },
    });
    // The client saw PROCESSING on another instance, and resumes here with its cursor.
    await changeAndDeliver(taskId!, 'PROCESSING');
    const cursor = log.head();
    expect(lagging.length).toBeGreaterThan(0);
    const stream = await watch.tenant(resumer, cursor);
    // The tail catches up past the cursor, then the task finishes.
    await changeAndDeliver(taskId!, 'SUCCEEDED');
    stopHolding();
    head = log.head();
    deliver(lagging.splice(0));
    expect(await take(stream, 1)).toEqual([{ status: 'SUCCEEDED', version: 3 }]);
  });
});
