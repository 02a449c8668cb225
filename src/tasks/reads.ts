import { and, asc, desc, eq, gte, inArray, lte, sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { keysetPast } from '../db/keyset.ts';
import { omniTasks, taskStatusCounts } from '../db/schema.ts';
import type { TaskStatus } from '../db/schema.ts';
import type { TaskRow } from './state.ts';

type TaskListFilter = { status?: TaskStatus[] | null; createdAfter?: Date | null; createdBefore?: Date | null };
/** `forward` walks newest → oldest (first/after); `backward` walks oldest → newest from `cursor` (last/before). */
type TaskPageRequest = {
  direction: 'forward' | 'backward';
  limit: number;
  cursor: { createdAt: Date; id: string } | null;
  filter: TaskListFilter;
};

function pageConditions(tenantId: string, page: TaskPageRequest): (SQL | undefined)[] {
  const { filter, cursor } = page;
  return [
    eq(omniTasks.tenantId, tenantId),
    // At most five distinct statuses, however long the list a client sent.
    filter.status && filter.status.length > 0 ? inArray(omniTasks.status, [...new Set(filter.status)]) : undefined,
    filter.createdAfter ? gte(omniTasks.createdAt, filter.createdAfter) : undefined,
    filter.createdBefore ? lte(omniTasks.createdAt, filter.createdBefore) : undefined,
    cursor === null
      ? undefined
      : keysetPast([omniTasks.createdAt, omniTasks.id], [cursor.createdAt, cursor.id], page.direction === 'forward' ? 'desc' : 'asc'),
  ];
}

const LAST_UUID = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

/** What clients and the gateway's own jobs read about tasks; nothing here writes. */
export function createTaskReads(db: Db) {
  // The hottest read (every omniTask, node and subscription update): built once, not per call.
  const byIdQuery = db
    .select()
    .from(omniTasks)
    .where(and(eq(omniTasks.id, sql.placeholder('id')), eq(omniTasks.tenantId, sql.placeholder('tenantId'))))
    .limit(1)
    .prepare('omni_task_by_id');

  // The commonest page (newest first, no filter, from the top or after a cursor): prepared once.
  // The first page is read as the page after a position past every row.
  const plainPage = db
    .select()
    .from(omniTasks)
    .where(
      and(
        eq(omniTasks.tenantId, sql.placeholder('tenantId')),
        sql`(${omniTasks.createdAt}, ${omniTasks.id}) < (${sql.placeholder('createdAt')}::timestamptz, ${sql.placeholder('id')}::uuid)`,
      ),
    )
    .orderBy(desc(omniTasks.createdAt), desc(omniTasks.id))
    .limit(sql.placeholder('limit'));
  const plainPageQuery = plainPage.prepare('omni_task_page');

  /** One page of `limit` rows in its direction's order: a query builder, to await or (tests) to EXPLAIN. */
  function pageQuery(tenantId: string, page: TaskPageRequest) {
    const order =
      page.direction === 'forward' ? [desc(omniTasks.createdAt), desc(omniTasks.id)] : [asc(omniTasks.createdAt), asc(omniTasks.id)];
    return db
      .select()
      .from(omniTasks)
      .where(and(...pageConditions(tenantId, page)))
      .orderBy(...order)
      .limit(page.limit);
  }

  return {
    /** A tenant's task; null for an unknown id and for another tenant's task alike. */
    async byId(tenantId: string, id: string): Promise<TaskRow | null> {
      const [task] = await byIdQuery.execute({ id, tenantId });
      return task ?? null;
    },

    /** Any tenant's task by id: for the webhook receiver, never for a client. */
    async find(id: string): Promise<TaskRow | null> {
      const [task] = await db.select().from(omniTasks).where(eq(omniTasks.id, id)).limit(1);
      return task ?? null;
    },

    pageQuery,
    /** The SQL of the prepared plain page (tests EXPLAIN its generic plan). */
    plainPageSql: () => plainPage.toSQL().sql,

    /** One page of `limit` rows in its direction's order. */
    page(tenantId: string, page: TaskPageRequest): Promise<TaskRow[]> {
      const { filter, cursor } = page;
      const plain = page.direction === 'forward' && !filter.status?.length && !filter.createdAfter && !filter.createdBefore;
      if (!plain) return pageQuery(tenantId, page);
      return plainPageQuery.execute({
        tenantId,
        createdAt: cursor === null ? 'infinity' : cursor.createdAt.toISOString(),
        id: cursor === null ? LAST_UUID : cursor.id,
        limit: page.limit,
      });
    },

    /** Tasks by status, all tenants: the counts the database maintains, so the cost is flat in table size. */
    async countByStatus(): Promise<Record<string, number>> {
      const rows = await db
        .select({ status: taskStatusCounts.status, count: sql<number>`sum(${taskStatusCounts.count})::int` })
        .from(taskStatusCounts)
        .groupBy(taskStatusCounts.status);
      return Object.fromEntries(rows.map((row) => [row.status, Number(row.count)]));
    },
  };
}

export type TaskReads = ReturnType<typeof createTaskReads>;
