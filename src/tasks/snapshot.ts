import { getTableColumns } from 'drizzle-orm';
import { omniTasks } from '../db/schema.ts';
import type { ChangePosition } from '../pubsub/change-log.ts';

const COLUMNS = Object.entries(getTableColumns(omniTasks));

type TaskRow = typeof omniTasks.$inferSelect;

/**
 * A task as a change-log entry recorded it (`to_jsonb` of the row, snake_case, timestamps as
 * strings) read back as the row type, through each column's own driver mapping; its change
 * position is the entry's.
 */
export function taskFromSnapshot(snapshot: Record<string, unknown>, position: ChangePosition): TaskRow {
  const row: Record<string, unknown> = {};
  for (const [key, column] of COLUMNS) {
    const value = snapshot[column.name];
    row[key] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
  }
  return { ...(row as TaskRow), changeTxid: position.txid, changeSeq: position.seq };
}
