import { randomUUID } from 'node:crypto';
import { encodeGlobalID } from '@pothos/plugin-relay';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POSTGRES_ONLY, serverUrl } from '../support/database.ts';
import { createTask, createTenant, TASK_FIELDS, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { TaskView, TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  await gateway?.stop();
});

type Page = {
  omniTasks: {
    edges: { cursor: string; node: { id: string; status: string; createdAt: string } }[];
    pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  };
};
const PAGE = `query ($first: Int, $after: String, $last: Int, $before: String, $filter: OmniTaskFilter) {
  omniTasks(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    edges { cursor node { id status createdAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

async function page(tenant: TestTenant, variables: Record<string, unknown>): Promise<Page['omniTasks']> {
  return expectData(await gateway.graphql<Page>(PAGE, variables, tenant.apiKey), PAGE).omniTasks;
}

/** Newest first, as the list promises: created_at descending, then id descending. */
function newestFirst(tasks: TaskView[]): string[] {
  return [...tasks]
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || taskUuid(b.id).localeCompare(taskUuid(a.id)))
    .map((task) => task.id);
}

describe('omniTasks paging', () => {
  let tenant: TestTenant;
  const created: TaskView[] = [];

  beforeAll(async () => {
    tenant = await createTenant(gateway, 'Pager');
    for (let i = 0; i < 25; i += 1) created.push(await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, prompt: `task ${i}` }));
  });

  it('visits 25 tasks 10 at a time, each once, newest first, while new tasks arrive between pages', async () => {
    const seen: string[] = [];
    const arrivals: string[] = [];
    let after: string | null = null;
    const infos: { hasNextPage: boolean; hasPreviousPage: boolean }[] = [];
    for (let pages = 0; pages < 10; pages += 1) {
      const current: Page['omniTasks'] = await page(tenant, { first: 10, after });
      seen.push(...current.edges.map((edge) => edge.node.id));
      infos.push(current.pageInfo);
      // A new task between pages is newer than every cursor: it must not shift what follows.
      arrivals.push((await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, prompt: `late ${pages}` })).id);
      if (!current.pageInfo.hasNextPage) break;
      after = current.pageInfo.endCursor;
    }
    expect(seen).toEqual(newestFirst(created));
    expect(infos.map((info) => info.hasNextPage)).toEqual([true, true, false]);
    expect(infos.map((info) => info.hasPreviousPage)).toEqual([false, true, true]);
    expect(seen.some((id) => arrivals.includes(id))).toBe(false);
  });

  it('walks back with last/before to the newest task', async () => {
    const all = expectData(await gateway.graphql<Page>(PAGE, { first: 100 }, tenant.apiKey)).omniTasks.edges.map((e) => e.node.id);
    const seen: string[][] = [];
    let before: string | null = null;
    for (let pages = 0; pages < 20; pages += 1) {
      const current: Page['omniTasks'] = await page(tenant, { last: 10, before });
      seen.unshift(current.edges.map((edge) => edge.node.id));
      if (!current.pageInfo.hasPreviousPage) break;
      before = current.pageInfo.startCursor;
    }
    expect(seen.flat()).toEqual(all);
  });

  it('filters by status and creation time', async () => {
    const other = await createTenant(gateway, 'Filterer');
    const ok = await createTask(gateway, other, TEXT_TO_VIDEO);
    gateway.simulator.faults.push({ op: 'create', kind: 'http400_1301' });
    await gateway.graphql(
      'mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { __typename } }',
      { input: TEXT_TO_VIDEO },
      other.apiKey,
    );
    const failed = await page(other, { first: 10, filter: { status: ['FAILED'] } });
    expect(failed.edges.map((edge) => edge.node.status)).toEqual(['FAILED']);
    const submitted = await page(other, { first: 10, filter: { status: ['SUBMITTED', 'PROCESSING', 'SUCCEEDED'] } });
    expect(submitted.edges.map((edge) => edge.node.id)).toEqual([ok.id]);
    const future = await page(other, { first: 10, filter: { createdAfter: new Date(Date.now() + 60_000).toISOString() } });
    expect(future.edges).toEqual([]);
    const past = await page(other, { first: 10, filter: { createdBefore: ok.createdAt } });
    expect(past.edges.map((edge) => edge.node.id)).toEqual([ok.id]);
  });

  it('refuses a bad cursor and an oversized page with a typed error', async () => {
    for (const variables of [{ first: 10, after: 'not-a-cursor' }, { first: 1000 }, { first: 5, last: 5 }]) {
      const response = await gateway.graphql(PAGE, variables, tenant.apiKey);
      expect(response.status, JSON.stringify(variables)).toBe(200);
      expect(response.body.errors?.[0]?.extensions?.code, JSON.stringify(variables)).toBe('BAD_USER_INPUT');
    }
  });
});

describe('tenant isolation', () => {
  it("tenant B cannot see, list, refresh or load by node any of tenant A's tasks: the answers equal those for an unknown id", async () => {
    const a = await createTenant(gateway, 'Isolated A');
    const b = await createTenant(gateway, 'Isolated B');
    const task = await createTask(gateway, a, { ...TEXT_TO_VIDEO, externalTaskId: 'secret-ref' });
    const unknown = encodeGlobalID('OmniTask', randomUUID());
    const probes = [
      `query ($id: ID!) { omniTask(id: $id) { ${TASK_FIELDS} } }`,
      `query ($id: ID!) { node(id: $id) { id ... on OmniTask { prompt } } }`,
      `mutation ($id: ID!) { refreshOmniTask(id: $id) { ${TASK_FIELDS} } }`,
    ];
    for (const query of probes) {
      const foreign = await gateway.graphql(query, { id: task.id }, b.apiKey);
      const missing = await gateway.graphql(query, { id: unknown }, b.apiKey);
      expect(foreign, query).toEqual(missing);
      expect(JSON.stringify(foreign.body), query).not.toContain('secret-ref');
      // The owner does see it.
      expect(JSON.stringify((await gateway.graphql(query, { id: task.id }, a.apiKey)).body), query).toContain(task.id);
    }
    const listed = await page(b, { first: 100 });
    expect(listed.edges.map((edge) => edge.node.id)).not.toContain(task.id);
    // The admin scope has no tenant, so it sees no task either.
    expect(expectData(await gateway.graphql('query ($id: ID!) { node(id: $id) { id } }', { id: task.id }))).toEqual({ node: null });
  });
});

describe('refreshOmniTask', () => {
  it('asks the upstream now and applies the answer', async () => {
    const slow = await startGateway({ delays: { processingMs: 60_000, finishMs: 120_000 } });
    try {
      const tenant = await createTenant(slow, 'Refresher');
      const task = await createTask(slow, tenant, TEXT_TO_VIDEO);
      expect(task.status).toBe('SUBMITTED');
      const refresh = `mutation ($id: ID!) { refreshOmniTask(id: $id) { status version upstreamTaskId } }`;
      const refreshed = expectData(
        await slow.graphql<{ refreshOmniTask: { status: string; version: number } }>(refresh, { id: task.id }, tenant.apiKey),
      );
      // Nothing changed upstream yet: same status, same version, and the upstream was asked.
      expect(refreshed.refreshOmniTask).toEqual({ status: 'SUBMITTED', version: 2, upstreamTaskId: task.upstreamTaskId });
      expect(slow.upstreamRequests.filter((r) => r.method === 'GET')).toHaveLength(1);
    } finally {
      await slow.stop();
    }
  });
});

describe.skipIf(serverUrl === null)('the list query on PostgreSQL', POSTGRES_ONLY, () => {
  it('uses the (tenant_id, created_at, id) index: no sequential scan, no sort', async () => {
    await createTenant(gateway, 'Explained');
    const client = postgres(gateway.database.url!, { max: 1, onnotice: () => {} });
    try {
      const [row] = await client`select id from tenants where name = 'Explained'`;
      const tenantId = row!.id as string;
      // Enough rows, across several tenants, that the planner's choice is a real one.
      await client`
        insert into omni_tasks (id, tenant_id, status, prompt, model_name, mode, has_video_input, request, request_hash, deadline_at, created_at)
        select gen_random_uuid(), t.id, 'SUCCEEDED', 'p', 'kling-video-o1', 'PRO', false,
               '{"referenceImages":[],"elements":[],"referenceVideos":[]}', 'h', now(), now() - (g * interval '1 second')
        from generate_series(1, 20000) g cross join (select id from tenants) t`;
      await client`analyze omni_tasks`;
      const cursor = { createdAt: new Date(Date.now() - 5_000_000), id: randomUUID() };
      for (const page of [
        { direction: 'forward', limit: 50, cursor: null, filter: {} },
        { direction: 'forward', limit: 50, cursor, filter: { status: ['SUCCEEDED', 'FAILED'] } },
        { direction: 'backward', limit: 50, cursor, filter: {} },
      ] as const) {
        const query = gateway.app.services.tasks
          .pageQuery(tenantId, { ...page, filter: { ...page.filter, status: page.filter.status ? [...page.filter.status] : null } })
          .toSQL();
        const plan = JSON.stringify(await client.unsafe(`explain (format json) ${query.sql}`, query.params as never[]));
        expect(plan, `${query.sql}\n${plan}`).toContain('omni_tasks_tenant_created_idx');
        expect(plan, plan).not.toContain('Seq Scan');
        // Any sort node (Sort, Incremental Sort) means the index did not deliver the page's order.
        expect(plan, plan).not.toMatch(/"Node Type":\s*"[^"]*Sort"/);
      }
      // The prepared plain page, under the generic plan PostgreSQL settles on for a prepared statement.
      const generic = await client.begin(async (tx) => {
        await tx.unsafe('set local plan_cache_mode = force_generic_plan');
        await tx.unsafe(`prepare plain_page as ${gateway.app.services.tasks.plainPageSql()}`);
        for (const [createdAt, id] of [
          ['infinity', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
          [cursor.createdAt.toISOString(), cursor.id],
        ]) {
          // Literals of our own making (a uuid, a timestamp): EXPLAIN EXECUTE takes no bind parameters.
          const rows = await tx.unsafe(`explain (format json) execute plain_page('${tenantId}', '${createdAt}', '${id}', 51)`);
          const plan = JSON.stringify(rows);
          expect(plan, plan).toContain('omni_tasks_tenant_created_idx');
          expect(plan, plan).not.toContain('Seq Scan');
          expect(plan, plan).not.toMatch(/"Node Type":\s*"[^"]*Sort"/);
        }
        return true;
      });
      expect(generic).toBe(true);
    } finally {
      await client.end();
    }
  });
});
