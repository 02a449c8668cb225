import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { generateApiKey } from '../../src/auth/api-keys.ts';
import { connectPglite, connectPostgres, queryRows } from '../../src/db/database.ts';
import type { Database, Db } from '../../src/db/database.ts';
import { apiKeys, tenants } from '../../src/db/schema.ts';
import { encodeCursor } from '../../src/graphql/cursor.ts';

export type BenchDatabase = {
  driver: 'postgres' | 'pglite';
  /** What the gateway needs to find the data: DATABASE_URL or DATA_DIR. */
  gatewayEnv: Record<string, string>;
  /** Open for seeding; closed by `release()` before the gateway starts (PGlite allows one process). */
  database: Database;
  serverVersion: string;
  release(): Promise<void>;
  /**
   * Takes the seeded tasks (made-up upstream ids, known to no upstream) off the reconciler's list
   * again after a scenario's callbacks moved them, so its polls do not load the next scenarios.
   * PostgreSQL only: PGlite admits one process, the gateway's.
   */
  quiesceSeeded(): Promise<void>;
  /** Drops the database or deletes the files; safe to call more than once, and after `release()`. */
  dispose(): Promise<void>;
};

/**
 * A fresh database for one run: `og_bench_<random>` on the server of `serverUrl` when it is set,
 * else PGlite in a temporary DATA_DIR. Migrated with the gateway's own migrator.
 */
export async function createBenchDatabase(serverUrl: string | null, dataDir: string): Promise<BenchDatabase> {
  if (serverUrl === null) {
    const database = await connectPglite(join(dataDir, 'pglite'));
    await database.migrate();
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      await database.close();
    };
    return {
      driver: 'pglite',
      gatewayEnv: { DATA_DIR: dataDir },
      database,
      serverVersion: await version(database.db),
      release,
      quiesceSeeded: async () => {},
      dispose: release,
    };
  }
  const name = `og_bench_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = connectPostgres(url.toString(), { max: 2 });
  let released = false;
  let dropped = false;
  const release = async () => {
    if (released) return;
    released = true;
    await database.close().catch(() => {});
  };
  const dispose = async () => {
    await release();
    if (dropped) return;
    dropped = true;
    const cleanup = postgres(serverUrl, { max: 1, onnotice: () => {} });
    try {
      await cleanup.unsafe(`drop database if exists ${name} with (force)`);
    } finally {
      await cleanup.end();
    }
  };
  try {
    await database.migrate();
    return {
      driver: 'postgres',
      gatewayEnv: { DATABASE_URL: url.toString() },
      database,
      serverVersion: await version(database.db),
      release,
      async quiesceSeeded() {
        const client = postgres(url.toString(), { max: 1, onnotice: () => {} });
        try {
          await client.unsafe(
            `update omni_tasks set next_check_at = null where upstream_task_id like 'bench-%' and next_check_at is not null`,
          );
        } finally {
          await client.end();
        }
      },
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

async function version(db: Db): Promise<string> {
  const [row] = await queryRows<{ version: string }>(db, sql`select version() as version`);
  return (row?.version ?? 'unknown').split(',')[0] ?? 'unknown';
}

const TEMPORARY_PREFIX = 'og-bench-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A temporary DATA_DIR, marked with the runner's pid. Directories left behind by runners that were
 * killed outright (SIGKILL leaves no chance to clean up) are removed here, on the next run.
 */
export function temporaryDirectory(): { path: string; remove(): void } {
  for (const name of readdirSync(tmpdir()).filter((entry) => entry.startsWith(TEMPORARY_PREFIX))) {
    const leftover = join(tmpdir(), name);
    try {
      if (!alive(Number(readFileSync(join(leftover, 'runner.pid'), 'utf8')))) rmSync(leftover, { recursive: true, force: true });
    } catch {
      // not ours, or being created right now
    }
  }
  const path = mkdtempSync(join(tmpdir(), TEMPORARY_PREFIX));
  writeFileSync(join(path, 'runner.pid'), String(process.pid));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export type SeededTenant = { id: string; name: string; apiKey: string };
export type WatchableTask = { id: string; upstreamTaskId: string };

export type Seed = {
  /** `rows.small` finished tasks: point reads and the flat-paging anchor. Its usage ledger is empty. */
  small: SeededTenant & { rows: number; taskId: string; middleCursor: string };
  /** `rows.large` finished tasks and `usageEvents` ledger rows this month. */
  large: SeededTenant & { rows: number; usageEvents: number; middleCursor: string };
  /** Submitted tasks whose callbacks move tenant-wide subscribers (one task per round). */
  fanout: SeededTenant & { tasks: WatchableTask[] };
  /** Submitted tasks, one per per-task subscriber. */
  watch: SeededTenant & { tasks: WatchableTask[] };
  /** Submitted tasks, each moved by exactly one callback in the ingestion run. */
  ingest: SeededTenant & { tasks: WatchableTask[] };
  /** Submitted tasks of another tenant, each moved by exactly one request to the database anchor. */
  ingestAnchor: SeededTenant & { tasks: WatchableTask[] };
  /** Submitted tasks changed while a subscriber is away, then replayed to it. */
  resume: SeededTenant & { tasks: WatchableTask[] };
};

export type SeedSizes = {
  small: number;
  large: number;
  usageEvents: number;
  fanoutTasks: number;
  watchTasks: number;
  ingestTasks: number;
  resumeTasks: number;
};

async function seedTenant(db: Db, name: string): Promise<SeededTenant> {
  const [tenant] = await db.insert(tenants).values({ name }).returning({ id: tenants.id });
  if (tenant === undefined) throw new Error('insert into tenants returned no row');
  const key = generateApiKey();
  await db.insert(apiKeys).values({ tenantId: tenant.id, keyHash: key.hash, prefix: key.prefix });
  return { id: tenant.id, name, apiKey: key.key };
}

/** `count` finished tasks, one second apart, newest now; generated inside the database. */
async function seedFinishedTasks(db: Db, tenantId: string, count: number): Promise<void> {
  await db.execute(sql`
    insert into omni_tasks (id, tenant_id, status, version, prompt, model_name, mode, aspect_ratio, duration_seconds,
                            has_video_input, request, request_hash, videos, deadline_at,
                            created_at, updated_at, submitted_at, completed_at)
    select gen_random_uuid(), ${tenantId}, 'SUCCEEDED', 4, 'A seeded benchmark task, number ' || g, 'kling-video-o1', 'PRO',
           'RATIO_16_9', 5, false, '{"referenceImages":[],"elements":[],"referenceVideos":[]}', md5(g::text),
           jsonb_build_array(jsonb_build_object('id', 'video-' || g, 'upstreamUrl', 'https://cdn.invalid/' || g || '.mp4', 'durationSeconds', 5)),
           now() + interval '1 day',
           now() - g * interval '1 second', now() - g * interval '1 second' + interval '90 seconds',
           now() - g * interval '1 second', now() - g * interval '1 second' + interval '90 seconds'
    from generate_series(1, ${count}) g`);
}

/**
 * `count` submitted tasks with made-up upstream ids and no reconciler check due, so that only the
 * benchmark's callbacks move them.
 */
async function seedSubmittedTasks(db: Db, tenantId: string, count: number, prefix: string): Promise<WatchableTask[]> {
  await db.execute(sql`
    insert into omni_tasks (id, tenant_id, status, version, prompt, model_name, mode, aspect_ratio, duration_seconds,
                            has_video_input, request, request_hash, upstream_task_id, deadline_at,
                            created_at, updated_at, submitted_at)
    select gen_random_uuid(), ${tenantId}, 'SUBMITTED', 2, 'A watched benchmark task, number ' || g, 'kling-video-o1', 'PRO',
           'RATIO_16_9', 5, false, '{"referenceImages":[],"elements":[],"referenceVideos":[]}', md5(g::text),
           ${prefix} || lpad(g::text, 7, '0'), now() + interval '1 day',
           now() - g * interval '1 millisecond', now() - g * interval '1 millisecond', now() - g * interval '1 millisecond'
    from generate_series(1, ${count}) g`);
  const rows = await queryRows<{ id: string; upstream_task_id: string }>(
    db,
    sql`select id, upstream_task_id from omni_tasks where tenant_id = ${tenantId} order by upstream_task_id`,
  );
  return rows.map((row) => ({ id: row.id, upstreamTaskId: row.upstream_task_id }));
}

/** Ledger rows on the tenant's first tasks, spread over the current month (the report's default range). */
async function seedUsageEvents(db: Db, tenantId: string, count: number): Promise<void> {
  await db.execute(sql`
    insert into usage_events (tenant_id, task_id, kind, mode, has_video_input, video_seconds, seconds_source, rate, units, occurred_at)
    select t.tenant_id, t.id,
           case when t.n % 10 = 0 then 'failure' else 'video' end,
           case when t.n % 3 = 0 then 'STD' else 'PRO' end,
           false,
           case when t.n % 10 = 0 then 0 else 5 end,
           case when t.n % 10 = 0 then 'none' else 'result' end,
           case when t.n % 3 = 0 then 0.6 else 0.8 end,
           case when t.n % 10 = 0 then 0 when t.n % 3 = 0 then 3 else 4 end,
           date_trunc('month', now()) + random() * (now() - date_trunc('month', now()))
    from (select id, tenant_id, row_number() over () as n from omni_tasks where tenant_id = ${tenantId} limit ${count}) t`);
}

/** The cursor of the task in the middle of the tenant's list: a page that starts deep inside it. */
async function middleCursor(db: Db, tenantId: string, rows: number): Promise<string> {
  const [row] = await queryRows<{ id: string; created_at: string }>(
    db,
    sql`select id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at
        from omni_tasks where tenant_id = ${tenantId}
        order by created_at desc, id desc offset ${Math.floor(rows / 2)} limit 1`,
  );
  if (row === undefined) throw new Error('no middle row to build a cursor from');
  return encodeCursor({ createdAt: new Date(row.created_at), id: row.id });
}

export async function seed(db: Db, sizes: SeedSizes, progress: (message: string) => void): Promise<Seed> {
  const small = await seedTenant(db, 'bench-small');
  const large = await seedTenant(db, 'bench-large');
  const fanout = await seedTenant(db, 'bench-fanout');
  const watch = await seedTenant(db, 'bench-watch');
  const ingest = await seedTenant(db, 'bench-ingest');
  const ingestAnchor = await seedTenant(db, 'bench-ingest-anchor');
  const resume = await seedTenant(db, 'bench-resume');
  let started = performance.now();
  await seedFinishedTasks(db, small.id, sizes.small);
  await seedFinishedTasks(db, large.id, sizes.large);
  progress(`seeded ${sizes.small + sizes.large} task rows in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  started = performance.now();
  await seedUsageEvents(db, large.id, sizes.usageEvents);
  const fanoutTasks = await seedSubmittedTasks(db, fanout.id, sizes.fanoutTasks, 'bench-fanout-');
  const watchTasks = await seedSubmittedTasks(db, watch.id, sizes.watchTasks, 'bench-watch-');
  const ingestTasks = await seedSubmittedTasks(db, ingest.id, sizes.ingestTasks, 'bench-ingest-');
  const ingestAnchorTasks = await seedSubmittedTasks(db, ingestAnchor.id, sizes.ingestTasks, 'bench-anchor-');
  const resumeTasks = await seedSubmittedTasks(db, resume.id, sizes.resumeTasks, 'bench-resume-');
  await db.execute(sql`analyze`);
  const [someTask] = await queryRows<{ id: string }>(
    db,
    sql`select id from omni_tasks where tenant_id = ${small.id} order by created_at desc limit 1 offset ${Math.floor(sizes.small / 3)}`,
  );
  if (someTask === undefined) throw new Error('the small tenant has no task');
  const seeded: Seed = {
    small: { ...small, rows: sizes.small, taskId: someTask.id, middleCursor: await middleCursor(db, small.id, sizes.small) },
    large: { ...large, rows: sizes.large, usageEvents: sizes.usageEvents, middleCursor: await middleCursor(db, large.id, sizes.large) },
    fanout: { ...fanout, tasks: fanoutTasks },
    watch: { ...watch, tasks: watchTasks },
    ingest: { ...ingest, tasks: ingestTasks },
    ingestAnchor: { ...ingestAnchor, tasks: ingestAnchorTasks },
    resume: { ...resume, tasks: resumeTasks },
  };
  progress(
    `seeded ${sizes.usageEvents} usage events and ${sizes.fanoutTasks + sizes.watchTasks + 2 * sizes.ingestTasks + sizes.resumeTasks} submitted tasks in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return seeded;
}
