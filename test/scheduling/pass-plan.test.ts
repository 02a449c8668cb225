import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { passCandidatesQuery } from '../../src/tasks/budget.ts';
import { createTestDatabase, insertTaskRows, POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/*
 * Every create and every dispatch pass reads the waiting tasks under the budget's lock. With the
 * budget full (the usual state of a busy account) that read must not touch the task table at all,
 * and with slots free it must reach the tasks through the queue's index, whatever the table holds.
 */

type PlanNode = { 'Node Type': string; 'Relation Name'?: string; 'Actual Loops'?: number; Plans?: PlanNode[] };

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

describe.skipIf(serverUrl === null)('a dispatch pass’s read of the waiting tasks on PostgreSQL', POSTGRES_ONLY, () => {
  it('reads no task row while the budget is full, and reads through the queue index while it is not', async () => {
    const { db } = database;
    const [waiting, holding] = await queryRows<{ id: string }>(
      db,
      sql`insert into tenants (name) values ('waiting'), ('holding') returning id`,
    );
    // 20,000 tasks waiting for a slot, one task holding the only slot of a budget of 1.
    const queued = await insertTaskRows(db, waiting!.id, { status: 'PENDING', count: 20_000 });
    await db.execute(sql`update omni_tasks set queued_at = now() - interval '1 minute' where tenant_id = ${waiting!.id}`);
    await insertTaskRows(db, holding!.id, { status: 'PROCESSING' });
    await db.execute(sql`analyze omni_tasks`);
    const explain = async (maxInFlight: number) => {
      const query = passCandidatesQuery(db, maxInFlight).getQuery();
      const rows = await database.db.execute(sql.raw(`explain (analyze, format json) ${inline(query.sql, query.params)}`));
      const [row] = (Array.isArray(rows) ? rows : (rows as { rows: unknown[] }).rows) as { 'QUERY PLAN': [{ Plan: PlanNode }] }[];
      return nodes(row!['QUERY PLAN'][0].Plan);
    };
    const full = (await explain(1)).filter((node) => node['Relation Name'] === 'omni_tasks');
    expect(full.length).toBeGreaterThan(0);
    for (const node of full) expect(node['Actual Loops'], JSON.stringify(node)).toBe(0);

    const free = await explain(100);
    expect(free.some((node) => node['Node Type'] === 'Seq Scan' && node['Relation Name'] === 'omni_tasks')).toBe(false);
    const picked = await queryRows<{ id: string }>(db, passCandidatesQuery(db, 100).getSQL());
    expect(picked).toHaveLength(99);
    expect(queued).toEqual(expect.arrayContaining(picked.map((row) => row.id)));
  });
});

/** The query with its parameters written in (numbers and uuids of our own making), for EXPLAIN ANALYZE. */
function inline(text: string, params: unknown[]): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const value = params[Number(n) - 1];
    return typeof value === 'number' ? String(value) : `'${String(value)}'`;
  });
}
