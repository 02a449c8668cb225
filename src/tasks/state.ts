import { and, eq, sql } from 'drizzle-orm';
import type { Db, Tx } from '../db/database.ts';
import { pipeline, queryPreparedRows } from '../db/database.ts';
import { omniTasks, taskEvents, taskSubmissions } from '../db/schema.ts';
import type { StoredVideo, TaskStatus } from '../db/schema.ts';
import { storable } from '../db/storable.ts';
import type { KlingTask } from '../kling/payload.ts';
import { appendChange, ChangeOrderConflict, positionNow, positionStillAhead } from '../pubsub/change-log.ts';
import { isLateSuccess } from './late-success.ts';
import { taskFromSnapshot } from './snapshot.ts';

export type TaskRow = typeof omniTasks.$inferSelect;

const RANK: Record<TaskStatus, number> = { PENDING: 0, SUBMITTED: 1, PROCESSING: 2, SUCCEEDED: 3, FAILED: 3, CANCELLED: 3 };

export function isFinal(status: TaskStatus): boolean {
  return RANK[status] === 3;
}

function statusFromUpstream(status: KlingTask['status']): TaskStatus {
  switch (status) {
    case 'submitted':
      return 'SUBMITTED';
    case 'processing':
      return 'PROCESSING';
    case 'succeed':
      return 'SUCCEEDED';
    case 'failed':
      return 'FAILED';
  }
}

/** The first look at a non-final task after a change, then backing off to a minute between polls. */
const FIRST_CHECK_DELAY_MS = 5_000;
const MAX_CHECK_DELAY_MS = 60_000;

/**
 * The first look after a change the upstream's callback brought: that callback shows the task's
 * callbacks arrive, so the poll behind them (a safety net for lost callbacks) comes later than
 * after other news. Polling every task 5 s after each callback would double the work of every
 * callback and the upstream reads of the account; a minute let a callback lost under load (a
 * timeout while the database was busy) wait as long, up against short deadlines.
 */
const CALLBACK_CHECK_DELAY_MS = 20_000;

function firstCheckDelaySeconds(source: string): number {
  return (source === 'webhook' ? CALLBACK_CHECK_DELAY_MS : FIRST_CHECK_DELAY_MS) / 1000;
}

/** When the reconciler looks next at a task that brought no news: 5 s after the first attempt, doubling up to a minute. */
export const nextCheckAfterAttempts = sql`now() + make_interval(secs => least(${MAX_CHECK_DELAY_MS / 1000}, ${FIRST_CHECK_DELAY_MS / 1000} * power(2, greatest(0, ${omniTasks.checkAttempts} - 1))))`;

export type Transition = {
  status: TaskStatus;
  statusMessage?: string | null;
  upstreamTaskId?: string | null;
  videos?: StoredVideo[];
  /** What brought the news: create, webhook, poll, refresh, deadline. */
  source: string;
  /** The raw upstream payload, kept in the audit trail whether or not it changes anything. */
  payload?: unknown;
  /** The upstream's `final_unit_deduction`, for the usage ledger. */
  upstreamUnits?: string | null;
  /** Apply only to a task in one of these states (e.g. a create's refusal only while still PENDING). */
  onlyFrom?: TaskStatus[];
};

/** Runs inside the transaction in which a task reaches a final state, after the task row is written. */
type FinalStateHook = (tx: Tx, task: TaskRow, transition: Transition) => Promise<void>;

/**
 * What else a final state writes, in its transaction, so that it commits or rolls back with the
 * state. The composition root (app.ts) names them: `recordUsage` (metering/metering.ts) on
 * both, and `queueArchive` (archive/archiver.ts) on success when videos are stored.
 */
export type FinalStateHooks = {
  onSucceeded: readonly FinalStateHook[];
  onFailed: readonly FinalStateHook[];
};

/** A copy of one result video in our store (1-based `videoIndex`, like the API's). */
type ArchivedVideo = { videoIndex: number; key: string; sizeBytes: number; sha256: string };

async function lockTask(tx: Tx, taskId: string): Promise<TaskRow | undefined> {
  const [task] = await tx.select().from(omniTasks).where(eq(omniTasks.id, taskId)).for('update');
  return task;
}

/**
 * Writes the event of a task's new version and appends it to the change log, which every live
 * subscriber, resumed subscription and (later) webhook reads. Returns the task with its position.
 */
async function recordVersion(tx: Tx, task: TaskRow, event: VersionEvent): Promise<TaskRow> {
  await pipeline(...versionWrites(tx, task, event));
  return task;
}

type VersionEvent = Pick<typeof taskEvents.$inferInsert, 'kind' | 'source' | 'fromStatus' | 'toStatus' | 'payload'>;

/** recordVersion's two writes (the event, the change-log row), to send behind the task's own write. */
const versionWrites = (tx: Tx, task: TaskRow, event: VersionEvent) =>
  [tx.insert(taskEvents).values({ taskId: task.id, version: task.version, ...event }), appendChange(tx, task.id)] as const;

/** Attempts at a transaction whose change would sort before one already logged (see appendChange). */
const MAX_ORDER_RETRIES = 5;

/**
 * Runs `work` in a transaction of its own and, once it has committed, wakes the change log's
 * readers. A transaction that lost the race described at appendChange is run again.
 */
async function commit<T>(db: Db, work: (tx: Tx) => Promise<T>, onCommitted: () => void): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const result = await db.transaction(work);
      onCommitted();
      return result;
    } catch (error) {
      if (!(error instanceof ChangeOrderConflict) || attempt >= MAX_ORDER_RETRIES) throw error;
    }
  }
}

/**
 * Moves a task forward under a row lock. Statuses only move forward (PENDING → SUBMITTED →
 * PROCESSING → SUCCEEDED | FAILED, or PENDING → CANCELLED while it waits for an upstream slot); a duplicate or stale status changes nothing and keeps the
 * version. Returns the task as it is after the call and whether it changed.
 */
async function transition(
  tx: Tx,
  taskId: string,
  next: Transition,
  hooks: FinalStateHooks,
): Promise<{ task: TaskRow; changed: boolean } | null> {
  const current = await lockTask(tx, taskId);
  if (current === undefined) return null;
  if (next.payload !== undefined) {
    await tx.insert(taskEvents).values({
      taskId,
      kind: 'upstream',
      source: next.source,
      payload: next.payload as object,
    });
  }
  // The one move out of a final state: FAILED at the deadline → SUCCEEDED upstream after all (late-success.ts).
  const stale = RANK[next.status] <= RANK[current.status] && !(await isLateSuccess(tx, current, next.status));
  if (stale || (next.onlyFrom && !next.onlyFrom.includes(current.status))) {
    // Not a change of state, but an upstream id learnt late (e.g. by a lookup) is still worth keeping.
    if (current.upstreamTaskId === null && next.upstreamTaskId) {
      await tx.update(omniTasks).set({ upstreamTaskId: next.upstreamTaskId }).where(eq(omniTasks.id, taskId));
      return { task: { ...current, upstreamTaskId: next.upstreamTaskId }, changed: false };
    }
    return { task: current, changed: false };
  }
  const final = isFinal(next.status);
  const [updated] = await tx
    .update(omniTasks)
    .set({
      status: next.status,
      statusMessage: next.statusMessage === undefined ? current.statusMessage : next.statusMessage,
      version: sql`${omniTasks.version} + 1`,
      upstreamTaskId: current.upstreamTaskId ?? next.upstreamTaskId ?? null,
      videos: next.videos ?? current.videos,
      updatedAt: sql`now()`,
      submittedAt: current.submittedAt ?? (next.status === 'PENDING' || next.status === 'CANCELLED' ? null : sql`now()`),
      completedAt: final ? sql`now()` : null,
      // Out of the queue with any change of state (dispatched, refused, cancelled, failed).
      queuedAt: null,
      // A cancelled task never reached the upstream: it costs nothing. Other final states get theirs from the ledger (hooks).
      units: next.status === 'CANCELLED' ? 0 : current.units,
      upstreamUnits: final ? (next.upstreamUnits ?? current.upstreamUnits) : current.upstreamUnits,
      nextCheckAt: final ? null : sql`now() + make_interval(secs => ${firstCheckDelaySeconds(next.source)})`,
      checkAttempts: 0,
      changeTxid: positionNow.txid,
      changeSeq: positionNow.seq,
    })
    .where(and(eq(omniTasks.id, taskId), positionStillAhead(omniTasks.changeTxid)))
    .returning();
  if (updated === undefined) throw new ChangeOrderConflict(taskId);
  if (updated.status !== 'PENDING') await tx.delete(taskSubmissions).where(eq(taskSubmissions.taskId, taskId));
  const finalHooks = updated.status === 'SUCCEEDED' ? hooks.onSucceeded : updated.status === 'FAILED' ? hooks.onFailed : [];
  for (const hook of finalHooks) await hook(tx, updated, next);
  // The hooks may have written the task's cost (recordUsage): read the row as they left it.
  const written = finalHooks.length > 0 ? ((await lockTask(tx, taskId)) ?? updated) : updated;
  const logged = await recordVersion(tx, written, {
    kind: 'status',
    source: next.source,
    fromStatus: current.status,
    toStatus: updated.status,
  });
  return { task: logged, changed: true };
}

/** Records a copy of a result video on its task: a new version, so that subscribers see `archived`. */
async function recordArchive(tx: Tx, taskId: string, copy: ArchivedVideo): Promise<TaskRow | null> {
  const task = await lockTask(tx, taskId);
  if (task === undefined) return null;
  const archive = { key: copy.key, sizeBytes: copy.sizeBytes, sha256: copy.sha256 };
  const videos = task.videos.map((video, i) => (i === copy.videoIndex - 1 ? { ...video, archive } : video));
  const [updated] = await tx
    .update(omniTasks)
    .set({
      videos,
      version: sql`${omniTasks.version} + 1`,
      updatedAt: sql`now()`,
      changeTxid: positionNow.txid,
      changeSeq: positionNow.seq,
    })
    .where(and(eq(omniTasks.id, taskId), positionStillAhead(omniTasks.changeTxid)))
    .returning();
  if (updated === undefined) throw new ChangeOrderConflict(taskId);
  return recordVersion(tx, updated, { kind: 'archive', source: 'archiver', payload: { videoIndex: copy.videoIndex, ...archive } });
}

/** What a callback's body says about which task it is (checked against the task before anything is written). */
export type UpstreamClaims = { upstreamTaskId: string; externalTaskId: string | null };

export type AdvanceOutcome = 'unknown' | 'contradicts' | 'changed' | 'unchanged';

/** A task's `status` ranked in SQL, from the same table as RANK; built once, not per callback. */
const STATUS_RANK = sql.raw(
  `(case status ${Object.entries(RANK)
    .map(([status, rank]) => `when '${status}' then ${rank}`)
    .join(' ')} end)`,
);

/**
 * A move to a non-final status reported by the upstream (a callback), in ONE statement and one
 * round trip: the same writes as `transition` (audit event, task row with its new position,
 * submission cleared, status event, change-log row), none of the final-state hooks (a non-final
 * status has none). The claims are checked against the locked row first: a body naming another
 * task writes nothing. A task still waiting for an upstream slot was never sent, so no genuine
 * callback can be about it: it stays in its queue.
 */
async function advance(db: Db, taskId: string, next: Transition, claims: UpstreamClaims, readBack: boolean): Promise<Advanced> {
  if (isFinal(next.status) || next.onlyFrom !== undefined) throw new Error('advance is for non-final upstream statuses only');
  const [row] = await queryPreparedRows<AdvanceRow>(
    db,
    sql`with cur as (
          select id, status, upstream_task_id, queued_at, ${STATUS_RANK} as rank from omni_tasks where id = ${taskId} for update
        ), fits as (
          select * from cur
          where (cur.upstream_task_id is null or cur.upstream_task_id = ${claims.upstreamTaskId})
            and (${claims.externalTaskId}::text is null or ${claims.externalTaskId}::text = cur.id::text)
        ), audit as (
          insert into task_events (task_id, kind, source, payload)
          select id, 'upstream', ${next.source}, ${JSON.stringify(next.payload ?? null)}::jsonb from fits where ${next.payload !== undefined}
        ), moved as (
          update omni_tasks t set
            status = ${next.status}, version = t.version + 1,
            status_message = ${next.statusMessage === undefined ? sql`t.status_message` : next.statusMessage},
            upstream_task_id = coalesce(t.upstream_task_id, ${next.upstreamTaskId ?? null}), updated_at = now(),
            submitted_at = coalesce(t.submitted_at, now()), completed_at = null,
            next_check_at = now() + make_interval(secs => ${firstCheckDelaySeconds(next.source)}), check_attempts = 0,
            change_txid = ${positionNow.txid}, change_seq = ${positionNow.seq}
          from fits
          where t.id = fits.id and fits.rank < ${RANK[next.status]} and fits.queued_at is null and ${positionStillAhead(sql`t.change_txid`)}
          returning t.*
        ), learnt as (
          update omni_tasks t set upstream_task_id = ${next.upstreamTaskId ?? null}
          from fits where t.id = fits.id and fits.rank >= ${RANK[next.status]} and fits.upstream_task_id is null
            and ${next.upstreamTaskId ?? null}::text is not null
        ), cleared as (
          delete from task_submissions where task_id in (select id from moved)
        ), recorded as (
          insert into task_events (task_id, version, kind, source, from_status, to_status)
          select moved.id, moved.version, 'status', ${next.source}, fits.status, moved.status from moved join fits on fits.id = moved.id
        ), logged as (
          insert into task_changes (txid, seq, tenant_id, task_id, version, task) overriding system value
          select moved.change_txid, moved.change_seq, moved.tenant_id, moved.id, moved.version, to_jsonb(moved) from moved
        )
        select exists (select 1 from cur) as found, exists (select 1 from fits) as fits,
               exists (select 1 from moved) as moved, exists (select 1 from fits where rank < ${RANK[next.status]} and queued_at is null) as ahead,
               (select to_jsonb(moved) from moved where ${readBack}::boolean) as task,
               (select moved.change_txid::text from moved where ${readBack}::boolean) as txid,
               (select moved.change_seq::text from moved where ${readBack}::boolean) as seq`,
  );
  if (row === undefined || !row.found) return { outcome: 'unknown', task: null };
  if (!row.fits) return { outcome: 'contradicts', task: null };
  if (row.ahead && !row.moved) throw new ChangeOrderConflict(taskId);
  if (!row.moved) return { outcome: 'unchanged', task: null };
  const task =
    row.task === null || row.txid === null || row.seq === null
      ? null
      : taskFromSnapshot(typeof row.task === 'string' ? JSON.parse(row.task) : row.task, { txid: BigInt(row.txid), seq: BigInt(row.seq) });
  return { outcome: 'changed', task };
}

type AdvanceRow = {
  found: boolean;
  fits: boolean;
  moved: boolean;
  ahead: boolean;
  /** The moved task (`to_jsonb`), when read back. */
  task: Record<string, unknown> | string | null;
  txid: string | null;
  seq: string | null;
};

/** What `advance` did and, when asked to read it back, the task as it moved (null otherwise). */
type Advanced = { outcome: AdvanceOutcome; task: TaskRow | null };

/** Runs `advance` until its change takes its place in the log, then wakes the log's readers. */
async function advanceInOrder(
  db: Db,
  taskId: string,
  next: Transition,
  claims: UpstreamClaims,
  onCommitted: () => void,
  readBack = false,
): Promise<Advanced> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const advanced = await advance(db, taskId, next, claims, readBack);
      if (advanced.outcome === 'changed') onCommitted();
      return advanced;
    } catch (error) {
      if (!(error instanceof ChangeOrderConflict) || attempt >= MAX_ORDER_RETRIES) throw error;
    }
  }
}

/**
 * The only writer of a task's `status` and `version`: every change of either is recorded as a
 * task event and appended to the change log, in the caller's transaction. Transactions that
 * change tasks run through `commit`, which wakes the log's readers once they have committed.
 */
export function createTaskStateMachine(deps: { finalStateHooks: FinalStateHooks; onCommitted?: () => void }) {
  const onCommitted = deps.onCommitted ?? (() => {});
  return {
    commit: <T>(db: Db, work: (tx: Tx) => Promise<T>): Promise<T> => commit(db, work, onCommitted),
    /** A task just inserted as PENDING, version 1: its event and change-log row, to send in a pipeline behind the writes that made the task as it now is. */
    creationWrites: (tx: Tx, task: TaskRow) => versionWrites(tx, task, { kind: 'status', source: 'create', toStatus: task.status }),
    transition: (tx: Tx, taskId: string, next: Transition) => transition(tx, taskId, next, deps.finalStateHooks),
    /** A non-final upstream status (a callback), in one statement of its own; see `advance`. */
    advance: async (db: Db, taskId: string, next: Transition, claims: UpstreamClaims): Promise<AdvanceOutcome> =>
      (await advanceInOrder(db, taskId, next, claims, onCommitted)).outcome,
    /** `advance`, and the task as it moved when it did: an answer that needs no read after it. */
    advanceAndRead: (db: Db, taskId: string, next: Transition, claims: UpstreamClaims): Promise<Advanced> =>
      advanceInOrder(db, taskId, next, claims, onCommitted, true),
    recordArchive,
  };
}

export type TaskStateMachine = ReturnType<typeof createTaskStateMachine>;

/** The transition that an upstream answer (query, callback or create) asks for. */
export function transitionFromUpstream(upstream: KlingTask, source: string): Transition {
  const status = statusFromUpstream(upstream.status);
  return storable({
    status,
    statusMessage: status === 'FAILED' ? upstream.statusMessage || 'The upstream reported the task as failed.' : null,
    upstreamTaskId: upstream.taskId,
    videos:
      status === 'SUCCEEDED'
        ? upstream.videos.map((video) => ({ id: video.id, upstreamUrl: video.url, durationSeconds: video.durationSeconds }))
        : undefined,
    source,
    payload: upstream.raw,
    upstreamUnits: upstream.finalUnitDeduction,
  });
}
