import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database, Tx } from '../db/database.ts';

/**
 * Both ends of the channel on which every committed task change is announced, so that the payload
 * written and the payload parsed are defined in one place.
 */
const TASK_CHANGES_CHANNEL = 'omni_task_changes';

export type TaskChange = { tenantId: string; taskId: string; version: number };

const changeModel = z.object({ tenantId: z.uuid(), taskId: z.uuid(), version: z.number().int() });

/** Announces a task's new version from inside the transaction that wrote it. */
export async function announceChange(tx: Tx, task: { tenantId: string; id: string; version: number }): Promise<void> {
  const change: TaskChange = { tenantId: task.tenantId, taskId: task.id, version: task.version };
  // pg_notify inside the transaction: delivered when, and only if, the change commits.
  await tx.execute(sql`select pg_notify(${TASK_CHANGES_CHANNEL}, ${JSON.stringify(change)})`);
}

/**
 * LISTENs for announced changes; `onListen` runs after the first LISTEN and after every
 * reconnect. Resolves with the function that stops listening.
 */
export function listenForChanges(
  database: Database,
  handlers: { onChange(change: TaskChange): void; onMalformed(payload: string): void; onListen(): void },
): Promise<() => Promise<void>> {
  return database.listen(
    TASK_CHANGES_CHANNEL,
    (payload) => {
      let change: TaskChange;
      try {
        change = changeModel.parse(JSON.parse(payload));
      } catch {
        handlers.onMalformed(payload);
        return;
      }
      handlers.onChange(change);
    },
    handlers.onListen,
  );
}
