import { createCipheriv, createDecipheriv, createHmac, createSecretKey } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import type { Database, Db, Executor, Tx } from '../db/database.ts';
import { queryPreparedRows, queryRows } from '../db/database.ts';
import type { Logger } from '../logger.ts';

/**
 * The change log (task_changes): every change of a task's status or version, appended in the
 * writing transaction, in one order shared by every instance: (txid, seq), the writing
 * transaction's id, then a global sequence. A reader takes only rows whose transaction is older
 * than every transaction still running (txid below the snapshot's xmin): no row can later appear
 * before such a position, so a reader moving forward in that order never skips a change, whatever
 * order transactions commit in. Wake-ups between instances are one NOTIFY per short interval, sent
 * outside the writing transactions; a missed one is caught by the next, or by the periodic read.
 */

export type ChangePosition = { txid: bigint; seq: bigint };

export type LoggedChange = {
  position: ChangePosition;
  tenantId: string;
  taskId: string;
  version: number;
  /** The task row as the change left it (to_jsonb, snake_case columns). */
  task: Record<string, unknown>;
};

const ORIGIN: ChangePosition = { txid: 0n, seq: 0n };

export function comparePositions(a: ChangePosition, b: ChangePosition): number {
  if (a.txid !== b.txid) return a.txid < b.txid ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

const CURSOR_PREFIX = 'c1.';

export type CursorCodec = {
  encode(position: ChangePosition): string;
  /** Null for anything the codec did not make (forged, altered, from another deployment). */
  decode(cursor: string): ChangePosition | null;
};

/**
 * Client cursors that are opaque for real: a position is global, so in the clear it would let one
 * tenant count every tenant's changes. AES-256-GCM under a key derived from the deployment's
 * secret, with the nonce derived from the position (the same position always gives the same
 * cursor; GCM's tag refuses any other string).
 */
export function createCursorCodec(secret: string): CursorCodec {
  const raw = createHmac('sha256', secret).update('omni-gateway change cursor v1').digest();
  // Key objects made once: a cursor goes out with every event, and importing a raw key each time costs more than the cipher.
  const key = createSecretKey(raw);
  const nonceKey = createSecretKey(raw);
  return {
    encode(position) {
      const plain = Buffer.alloc(16);
      plain.writeBigUInt64BE(position.txid, 0);
      plain.writeBigUInt64BE(position.seq, 8);
      const nonce = createHmac('sha256', nonceKey).update(plain).digest().subarray(0, 12);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);
      return CURSOR_PREFIX + Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString('base64url');
    },
    decode(cursor) {
      if (!cursor.startsWith(CURSOR_PREFIX) || cursor.length > 80) return null;
      const bytes = Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url');
      if (bytes.length !== 44) return null;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
        decipher.setAuthTag(bytes.subarray(28));
        const plain = Buffer.concat([decipher.update(bytes.subarray(12, 28)), decipher.final()]);
        return { txid: plain.readBigUInt64BE(0), seq: plain.readBigUInt64BE(8) };
      } catch {
        return null;
      }
    },
  };
}

/** Appending would put this change before one already logged for the task: retry the transaction. */
export class ChangeOrderConflict extends Error {
  constructor(taskId: string) {
    super(`task ${taskId}: a later transaction logged a change first; the transaction must be retried`);
    this.name = 'ChangeOrderConflict';
  }
}

/**
 * The position a change written now takes: set on the task row in the same statement that changes
 * it (one write of the row per change), then copied into the log by `appendChange`.
 */
export const positionNow = {
  txid: sql`pg_current_xact_id()::text::bigint`,
  seq: sql`nextval('task_changes_seq_seq')`,
};

/**
 * Whether a change written now would sort after the task's last logged change. A transaction's id
 * is taken when it first writes, which can be before that of a transaction that changed the task
 * just before it; its change would then sort first. Writers add this to their update's condition
 * and, when no row matches, throw ChangeOrderConflict: the transaction is run again with a new,
 * larger id, so a task's changes are in the log in the order they happened.
 */
export const positionStillAhead = (changeTxid: unknown) => sql`${changeTxid} <= pg_current_xact_id()::text::bigint`;

/**
 * Appends the change of a task already written in `tx` (its row carries the new position), with the
 * task as it now is; a query to await or to send in a pipeline behind the task's write.
 */
export const appendChange = (tx: Tx, taskId: string) =>
  tx.execute(
    sql`insert into task_changes (txid, seq, tenant_id, task_id, version, task) overriding system value
        select t.change_txid, t.change_seq, t.tenant_id, t.id, t.version, to_jsonb(t) from omni_tasks t where t.id = ${taskId}`,
  );

/**
 * A change as read: positions come as text (bigints), so every ORDER BY below names the table's
 * bigint columns (`c.txid`), never these text aliases, which would sort 10 before 9.
 */
type ChangeRow = { txid: string; seq: string; tenant_id: string; task_id: string; version: number; task: Record<string, unknown> | string };

function toChange(row: ChangeRow): LoggedChange {
  return {
    position: { txid: BigInt(row.txid), seq: BigInt(row.seq) },
    tenantId: row.tenant_id,
    taskId: row.task_id,
    version: Number(row.version),
    task: typeof row.task === 'string' ? (JSON.parse(row.task) as Record<string, unknown>) : row.task,
  };
}

const XMIN = sql`pg_snapshot_xmin(pg_current_snapshot())::text::bigint`;
const PRUNED_THROUGH = 'change_log_pruned_through';

/**
 * The readable changes after `after`, in log order, and whether newer changes wait on older
 * transactions. Exported for readers that keep their own position in the database (webhooks).
 */
export async function readChangesAfter(
  db: Executor,
  after: ChangePosition,
  limit: number,
): Promise<{ changes: LoggedChange[]; waiting: boolean }> {
  const [row] = await queryPreparedRows<{ waiting: boolean; changes: ChangeRow[] | string }>(db, tailRead(after, limit));
  const rows = typeof row?.changes === 'string' ? (JSON.parse(row.changes) as ChangeRow[]) : (row?.changes ?? []);
  return { changes: rows.map(toChange), waiting: Boolean(row?.waiting) };
}

/**
 * readChangesAfter's one statement (exported for a test of its plan). Both parts walk the primary
 * key: `waiting` compares the newest txid with the horizon (an EXISTS over `txid >= xmin` was
 * planned as a scan of the whole log, at every read), the changes are a range of it.
 */
export function tailRead(after: ChangePosition, limit: number): SQL {
  return sql`select
          coalesce((select max(txid) from task_changes), 0) >= h.xmin as waiting,
          (select coalesce(json_agg(r order by r.txid::bigint, r.seq::bigint), '[]'::json) from (
            select c.txid::text as txid, c.seq::text as seq, c.tenant_id, c.task_id, c.version, c.task from task_changes c
            where (c.txid, c.seq) > (${after.txid.toString()}::bigint, ${after.seq.toString()}::bigint) and c.txid < h.xmin
            order by c.txid, c.seq limit ${limit}
          ) r) as changes
        from (select ${XMIN} as xmin) h`;
}

/** The last readable position: where a reader starting now begins. */
async function readableHead(db: Executor): Promise<ChangePosition> {
  const [row] = await queryRows<{ txid: string; seq: string }>(
    db,
    sql`select c.txid::text as txid, c.seq::text as seq from task_changes c where c.txid < ${XMIN} order by c.txid desc, c.seq desc limit 1`,
  );
  return row === undefined ? ORIGIN : { txid: BigInt(row.txid), seq: BigInt(row.seq) };
}

/**
 * One tenant's changes after `after` up to `upTo`, only the latest of each task, in log order:
 * what a subscriber resuming from `after` missed.
 */
async function replay(db: Executor, tenantId: string, after: ChangePosition, upTo: ChangePosition): Promise<LoggedChange[]> {
  const rows = await queryRows<ChangeRow>(
    db,
    sql`select * from (
          select distinct on (c.task_id) c.txid::text as txid, c.seq::text as seq, c.tenant_id, c.task_id, c.version, c.task
          from task_changes c
          where c.tenant_id = ${tenantId}
            and (c.txid, c.seq) > (${after.txid.toString()}::bigint, ${after.seq.toString()}::bigint)
            and (c.txid, c.seq) <= (${upTo.txid.toString()}::bigint, ${upTo.seq.toString()}::bigint)
          order by c.task_id, c.txid desc, c.seq desc
        ) latest order by txid::bigint, seq::bigint`,
  );
  return rows.map(toChange);
}

/** Whether changes after `position` may have been pruned already (the client must re-list). */
async function isExpired(db: Executor, position: ChangePosition): Promise<boolean> {
  const [row] = await queryRows<{ value: string }>(db, sql`select value from settings where key = ${PRUNED_THROUGH}`);
  if (row === undefined) return false;
  const [txid, seq] = row.value.split('.');
  return comparePositions(position, { txid: BigInt(txid ?? '0'), seq: BigInt(seq ?? '0') }) < 0;
}

/** Deletes up to `limit` changes older than the retention, remembering how far it pruned. */
async function prune(db: Db, retentionSeconds: number, limit: number): Promise<number> {
  return db.transaction(async (tx) => {
    const [row] = await queryRows<{ deleted: number; txid: string | null; seq: string | null }>(
      tx,
      sql`with doomed as (
            delete from task_changes where (txid, seq) in (
              select txid, seq from task_changes where created_at < now() - make_interval(secs => ${retentionSeconds})
              order by txid, seq limit ${limit})
            returning txid, seq
          ), last as (select txid, seq from doomed order by txid desc, seq desc limit 1)
          select (select count(*) from doomed)::int as deleted, (select txid::text from last) as txid, (select seq::text from last) as seq`,
    );
    if (row === undefined || row.deleted === 0 || row.txid === null) return 0;
    await tx.execute(
      sql`insert into settings (key, value) values (${PRUNED_THROUGH}, ${`${row.txid}.${row.seq}`})
          on conflict (key) do update set value = excluded.value
          where (split_part(settings.value, '.', 1)::bigint, split_part(settings.value, '.', 2)::bigint)
              < (split_part(excluded.value, '.', 1)::bigint, split_part(excluded.value, '.', 2)::bigint)`,
    );
    return row.deleted;
  });
}

export type ChangeLogOptions = {
  /** How often the log is read without a wake-up (the safety net for a missed NOTIFY). */
  pollMs?: number;
  /** At most one NOTIFY per this interval, however many changes commit. */
  notifyIntervalMs?: number;
  batchSize?: number;
};

/**
 * The tail of the log on this instance: reads everything readable after its head, in batches, and
 * hands each batch to the listeners. A read asked for during a read makes that read go round once
 * more; newer changes that wait on an older transaction are looked for again soon.
 */
function createTail(db: Db, logger: Logger, start: ChangePosition, options: Required<ChangeLogOptions>) {
  const listeners = new Set<(changes: LoggedChange[]) => void>();
  let head = start;
  let reading: Promise<void> | null = null;
  let again = false;
  let closed = false;
  let recheck: NodeJS.Timeout | null = null;
  let recheckDelay = 2;

  const scheduleRecheck = (delayMs: number) => {
    if (recheck !== null || closed) return;
    recheck = setTimeout(() => {
      recheck = null;
      read();
    }, delayMs);
    recheck.unref();
  };
  const deliver = (changes: LoggedChange[]) => {
    for (const listener of [...listeners]) {
      try {
        listener(changes);
      } catch (error) {
        logger.error({ err: error }, 'change log listener failed');
      }
    }
  };
  async function drain(): Promise<void> {
    do {
      again = false;
      const { changes, waiting } = await readChangesAfter(db, head, options.batchSize);
      const last = changes.at(-1);
      if (last !== undefined) {
        head = last.position;
        deliver(changes);
      }
      if (changes.length === options.batchSize) again = true;
      else if (waiting) {
        scheduleRecheck(recheckDelay);
        recheckDelay = Math.min(options.pollMs, recheckDelay * 2);
      } else recheckDelay = 2;
    } while (again && !closed);
  }
  function read(): void {
    if (closed) return;
    if (reading !== null) {
      again = true;
      return;
    }
    reading = drain()
      .catch((error: unknown) => {
        logger.warn({ err: error }, 'change log read failed; reading again shortly');
        scheduleRecheck(Math.min(options.pollMs, 250));
      })
      .finally(() => {
        reading = null;
      });
  }
  return {
    read,
    head: () => head,
    listen(listener: (changes: LoggedChange[]) => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close(): Promise<void> {
      closed = true;
      if (recheck !== null) clearTimeout(recheck);
      listeners.clear();
      await reading;
    },
  };
}

/** Wakes the other instances: at most one NOTIFY per interval, sent outside any writing transaction. */
function createWaker(db: Db, logger: Logger, intervalMs: number) {
  let last = 0;
  let timer: NodeJS.Timeout | null = null;
  const notify = () => {
    last = performance.now();
    db.execute(sql`select pg_notify(${CHANNEL}, '')`).catch((error: unknown) => {
      logger.warn({ err: error }, 'change log wake-up could not be sent; other instances read on their own');
    });
  };
  return {
    wake(): void {
      if (timer !== null) return;
      const wait = intervalMs - (performance.now() - last);
      if (wait <= 0) {
        notify();
        return;
      }
      timer = setTimeout(() => {
        timer = null;
        notify();
      }, wait);
    },
    close(): void {
      if (timer !== null) clearTimeout(timer);
    },
  };
}

const CHANNEL = 'omni_task_changes';

/** This instance's view of the change log: its live tail, wake-ups, replay and pruning. */
export async function createChangeLog(database: Database, logger: Logger, options: ChangeLogOptions = {}) {
  const settings = { pollMs: 1_000, notifyIntervalMs: 5, batchSize: 1_000, ...options };
  const db = database.db;
  const tail = createTail(db, logger, await readableHead(db), settings);
  const waker = createWaker(db, logger, settings.notifyIntervalMs);
  const unlisten = await database.listen(CHANNEL, tail.read, tail.read);
  const poll = setInterval(tail.read, settings.pollMs);
  poll.unref();
  return {
    /** After a commit that appended changes: this instance reads at once, the others on one batched NOTIFY. */
    wake(): void {
      tail.read();
      waker.wake();
    },
    /** Live changes, in log order, from the current head on. */
    listen: tail.listen,
    /** The position of the last change handed to listeners. */
    head: tail.head,
    replay: (tenantId: string, after: ChangePosition, upTo: ChangePosition) => replay(db, tenantId, after, upTo),
    isExpired: (position: ChangePosition) => isExpired(db, position),
    prune: (retentionSeconds: number, limit = 5_000) => prune(db, retentionSeconds, limit),
    async close(): Promise<void> {
      clearInterval(poll);
      waker.close();
      await tail.close();
      await unlisten();
    },
  };
}

export type ChangeLog = Awaited<ReturnType<typeof createChangeLog>>;
