import { sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';

/**
 * Rows strictly past `position` in a list ordered by (time, uuid id), walking in `direction`:
 * 'asc' keeps later rows, 'desc' earlier ones. A row-value comparison, in the order of the
 * (…, time, id) indexes, so the scan starts at the position instead of filtering what it read.
 */
export function keysetPast(
  columns: readonly [time: PgColumn, id: PgColumn],
  position: readonly [time: Date, id: string],
  direction: 'asc' | 'desc',
): SQL {
  const [timeColumn, idColumn] = columns;
  const [time, id] = position;
  const comparison = direction === 'asc' ? sql.raw('>') : sql.raw('<');
  return sql`(${timeColumn}, ${idColumn}) ${comparison} (${time.toISOString()}::timestamptz, ${id}::uuid)`;
}
