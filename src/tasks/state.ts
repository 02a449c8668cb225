import { eq, sql } from 'drizzle-orm';
import type { Tx } from '../db/database.ts';
import { omniTasks, taskEvents, taskSubmissions } from '../db/schema.ts';
import type { StoredVideo, TaskStatus } from '../db/schema.ts';
import { storable } from '../db/storable.ts';
import type { KlingTask } from '../kling/client.ts';
import { announceChange } from '../pubsub/task-changes.ts';

export type TaskRow = typeof omniTasks.$inferSelect;

const RANK: Record<TaskStatus, number> = { PENDING: 0, SUBMITTED: 1, PROCESSING: 2, SUCCEEDED: 3, FAILED: 3 };

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
export const FIRST_CHECK_DELAY_MS = 5_000;
export const MAX_CHECK_DELAY_MS = 60_000;

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

/** Runs inside the transaction in which a task reaches a final state (metering). */
export type OnFinal = (tx: Tx, task: TaskRow, transition: Transition) => Promise<void>;

/**
 * Moves a task forward under a row lock. Statuses only move forward (PENDING → SUBMITTED →
 * PROCESSING → SUCCEEDED | FAILED); a duplicate or stale status changes nothing and keeps the
 * version. Returns the task as it is after the call and whether it changed.
 */
export async function transitionTask(
  tx: Tx,
  taskId: string,
  next: Transition,
  onFinal?: OnFinal,
): Promise<{ task: TaskRow; changed: boolean } | null> {
  const [current] = await tx.select().from(omniTasks).where(eq(omniTasks.id, taskId)).for('update');
  if (current === undefined) return null;
  if (next.payload !== undefined) {
    await tx.insert(taskEvents).values({
      taskId,
      kind: 'upstream',
      source: next.source,
      payload: next.payload as object,
    });
  }
  if (RANK[next.status] <= RANK[current.status] || (next.onlyFrom && !next.onlyFrom.includes(current.status))) {
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
      submittedAt: current.submittedAt ?? (next.status === 'PENDING' ? null : sql`now()`),
      completedAt: final ? sql`now()` : null,
      nextCheckAt: final ? null : sql`now() + make_interval(secs => ${FIRST_CHECK_DELAY_MS / 1000})`,
      checkAttempts: 0,
    })
    .where(eq(omniTasks.id, taskId))
    .returning();
  if (updated === undefined) throw new Error(`task ${taskId} vanished under its row lock`);
  await tx.insert(taskEvents).values({
    taskId,
    kind: 'status',
    source: next.source,
    fromStatus: current.status,
    toStatus: updated.status,
    version: updated.version,
  });
  if (updated.status !== 'PENDING') await tx.delete(taskSubmissions).where(eq(taskSubmissions.taskId, taskId));
  if (final && onFinal !== undefined) await onFinal(tx, updated, next);
  await announceChange(tx, updated);
  return { task: updated, changed: true };
}

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
