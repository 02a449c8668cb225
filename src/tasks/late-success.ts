import { and, eq } from 'drizzle-orm';
import type { Tx } from '../db/database.ts';
import { taskEvents } from '../db/schema.ts';
import type { TaskStatus } from '../db/schema.ts';

/** The source of the reconciler's failure of a task that reached its deadline with no final state. */
export const DEADLINE_SOURCE = 'deadline';

/**
 * Whether `next` is a success the upstream reports after the gateway gave the task up at its
 * deadline: the one move out of a final state that the state machine allows (FAILED → SUCCEEDED),
 * so that a video the upstream made, and bills, is never dropped. The failure is the deadline's
 * when the status event of the task's current version came from the deadline: that event is
 * written in the failing transaction, and nothing else bumps a FAILED task's version.
 */
export async function isLateSuccess(
  tx: Tx,
  current: { id: string; status: TaskStatus; version: number },
  next: TaskStatus,
): Promise<boolean> {
  if (current.status !== 'FAILED' || next !== 'SUCCEEDED') return false;
  const [failure] = await tx
    .select({ source: taskEvents.source })
    .from(taskEvents)
    .where(and(eq(taskEvents.taskId, current.id), eq(taskEvents.kind, 'status'), eq(taskEvents.version, current.version)))
    .limit(1);
  return failure?.source === DEADLINE_SOURCE;
}
