// `npm run bench [-- --quick] [-- --profile] [-- --only=throughput,paging]`: the benchmark suite.
// Starts the upstream simulator, the anchor (a bare yoga server) and the gateway as processes of
// their own, on a fresh database (PostgreSQL at DATABASE_URL, else PGlite), seeds it, measures every
// figure next to its anchor, stops everything, prints one table and writes bench/results/latest.json
// (latest-quick.json for --quick, latest-partial.json for --only).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchDatabase, seed, temporaryDirectory } from './support/database.ts';
import type { BenchDatabase } from './support/database.ts';
import { stopLoad } from './support/load.ts';
import { freePort, projectRoot, startNode, waitForHttp } from './support/processes.ts';
import type { Child } from './support/processes.ts';
import { profileSpan, readProfile, summariseProfile } from './support/profile.ts';
import type { ProfileSummary, Window } from './support/profile.ts';
import { renderTable } from './support/report.ts';
import type { Figure } from './support/report.ts';
import { FANOUT_PROBES, FANOUT_WARMUPS, SCENARIOS } from './scenarios.ts';
import type { BenchContext, Plan } from './scenarios.ts';
import { monotonicMicros } from './support/stats.ts';

const USAGE = `usage: npm run bench [-- options]
  --quick          smaller sizes and shorter runs (under 2 minutes); the table says which were used
  --profile        run the gateway under --cpu-prof and print where its CPU time went, per scenario
  --only=a,b       run only these scenarios: ${SCENARIOS.map((scenario) => scenario.id).join(', ')}
  DATABASE_URL     set: a fresh database og_bench_<random> on that server (dropped afterwards); unset: PGlite`;

const PLANS: Record<'quick' | 'full', Plan> = {
  full: {
    mode: 'full',
    rows: { small: 10_000, large: 1_000_000, usageEvents: 1_000_000 },
    throughput: { connections: 10, warmupSeconds: 3, seconds: 10 },
    latency: { connections: 1, warmupSeconds: 2, seconds: 8 },
    delivery: { subscribers: 1_000, rounds: 30, callbacks: 200 },
    memory: { subscriptions: 10_000 },
    ingest: { connections: 64, warmup: 2_000, callbacks: 20_000 },
    resume: { changes: 1_000 },
    webhooks: { burst: 1_000, sequential: 200 },
  },
  quick: {
    mode: 'quick',
    rows: { small: 1_000, large: 100_000, usageEvents: 10_000 },
    throughput: { connections: 10, warmupSeconds: 1, seconds: 3 },
    latency: { connections: 1, warmupSeconds: 1, seconds: 3 },
    delivery: { subscribers: 300, rounds: 10, callbacks: 50 },
    memory: { subscriptions: 2_000 },
    ingest: { connections: 64, warmup: 500, callbacks: 3_000 },
    resume: { changes: 1_000 },
    webhooks: { burst: 200, sequential: 50 },
  },
};

/** Hard limits after which the run gives up and cleans up (the targets are 2 and 10 minutes). */
const WATCHDOG_MS = { quick: 6 * 60_000, full: 25 * 60_000 };

const resultsDir = join(projectRoot, 'bench', 'results');
const profileDir = join(resultsDir, 'profiles');

let aborting = false;

function log(message: string): void {
  // Once interrupted, the scenario still in flight fails noisily against stopped processes: hush.
  if (aborting) return;
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function options() {
  try {
    const { values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        only: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    });
    const only =
      values.only
        ?.split(',')
        .map((id) => id.trim())
        .filter((id) => id.length > 0) ?? null;
    const unknown = only?.filter((id) => !SCENARIOS.some((scenario) => scenario.id === id)) ?? [];
    if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')}`);
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    return { quick: values.quick, profile: values.profile, only };
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    process.exit(2);
  }
}

// --- cleanup, whatever happens -------------------------------------------------------------------

const cleanups: { name: string; run: () => Promise<unknown> | unknown }[] = [];
let cleaning: Promise<void> | null = null;

/** Runs every registered cleanup once, newest first; a failing one does not stop the others. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    stopLoad();
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup.run();
      } catch (error) {
        log(`cleanup "${cleanup.name}" failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  })();
  return cleaning;
}

function abort(reason: string, code: number): void {
  log(`${reason}: stopping everything`);
  aborting = true;
  void cleanUp().finally(() => process.exit(code));
}

// --- machine and commit --------------------------------------------------------------------------

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function machine() {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverageAtStart: loadavg().map((value) => Number(value.toFixed(2))),
  };
}

function commit(): string {
  const sha = git(['rev-parse', '--short', 'HEAD']) ?? 'unknown';
  const dirty = (git(['status', '--porcelain']) ?? '').length > 0;
  return dirty ? `${sha} (uncommitted changes)` : sha;
}

function powerOfTen(n: number): string {
  const exponent = Math.log10(n);
  return Number.isInteger(exponent) ? `10^${exponent}` : n.toLocaleString('en-US');
}

// --- the run -------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const opts = options();
  const plan = PLANS[opts.quick ? 'quick' : 'full'];
  const selected = SCENARIOS.filter((scenario) => opts.only === null || opts.only.includes(scenario.id));
  const serverUrl = process.env.DATABASE_URL || null;
  const started = performance.now();
  const meta = { machine: machine(), commit: commit(), startedAt: new Date().toISOString() };
  if ((meta.machine.loadAverageAtStart[0] ?? 0) > meta.machine.cores / 2) {
    log(`warning: load average ${meta.machine.loadAverageAtStart[0]} on ${meta.machine.cores} cores — figures will be noisy`);
  }

  process.once('SIGINT', () => abort('interrupted', 130));
  process.once('SIGTERM', () => abort('terminated', 143));
  setTimeout(() => abort(`watchdog: no result after ${WATCHDOG_MS[plan.mode] / 60_000} minutes`, 124), WATCHDOG_MS[plan.mode]).unref();

  const dataDir = temporaryDirectory();
  cleanups.push({ name: 'temporary directory', run: () => dataDir.remove() });

  // 1. The database: created, migrated and seeded before the gateway opens it.
  log(`${serverUrl === null ? 'PGlite' : 'PostgreSQL'}: creating, migrating and seeding a fresh database`);
  const database: BenchDatabase = await createBenchDatabase(serverUrl, dataDir.path);
  cleanups.push({ name: 'database', run: () => database.dispose() });
  const sizes = {
    ...plan.rows,
    fanoutTasks: FANOUT_PROBES + FANOUT_WARMUPS + plan.delivery.rounds,
    watchTasks: Math.max(plan.delivery.subscribers, plan.memory.subscriptions),
    ingestTasks: plan.ingest.warmup + plan.ingest.callbacks,
    resumeTasks: plan.resume.changes + 1,
  };
  const seeded = await seed(database.database.db, sizes, log);
  await database.release();

  // 2. Simulator, anchor and gateway, each a process of its own.
  const simulator = startNode('simulator', 'src/simulator/main.ts', {
    // Tasks never move by themselves during a run: only the benchmark's callbacks change them.
    args: ['--port', '0', '--processing-ms', '3600000', '--finish-ms', '3600000'],
  });
  const anchor = startNode('anchor', 'bench/anchor-yoga.ts');
  // The database anchors need a server to connect to: PostgreSQL only (PGlite allows one process).
  const dbAnchor =
    database.driver === 'postgres'
      ? startNode('db anchor', 'bench/anchor-db.ts', { env: { ...database.gatewayEnv, DB_POOL_SIZE: '10' } })
      : null;
  const children: Child[] = [simulator, anchor, ...(dbAnchor === null ? [] : [dbAnchor])];
  cleanups.push({ name: 'simulator and anchor', run: () => Promise.all(children.map((child) => child.stop(5_000))) });
  const simulatorUrl = (await simulator.waitForLine(/kling simulator listening on /, 20_000)).replace(/^.*listening on /, '').trim();
  const anchorUrl = (await anchor.waitForLine(/anchor listening on /, 20_000)).replace(/^.*listening on /, '').trim();
  const dbAnchorUrl =
    dbAnchor === null ? null : (await dbAnchor.waitForLine(/db anchor listening on /, 20_000)).replace(/^.*listening on /, '').trim();
  const settings = await fetch(`${simulatorUrl}/__control/settings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ callbacks: false }),
  });
  if (settings.status !== 200) throw new Error(`simulator settings answered ${settings.status}`);

  const adminKey = `bench-admin-${randomBytes(12).toString('hex')}`;
  const webhookSecret = randomBytes(32).toString('base64url');
  const gatewayPort = await freePort();
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const profileName = `gateway-${meta.startedAt.replace(/[:.]/g, '-')}.cpuprofile`;
  if (opts.profile) mkdirSync(profileDir, { recursive: true });
  // The listening line is an info log, which LOG_LEVEL=warn hides: the port is chosen here instead.
  const gatewayEnv = (port: number): Record<string, string> => ({
    ...database.gatewayEnv,
    DATA_DIR: dataDir.path,
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: gatewayUrl,
    COMETAPI_KEY: 'bench',
    COMETAPI_BASE_URL: simulatorUrl,
    ADMIN_API_KEY: adminKey,
    WEBHOOK_SECRET: webhookSecret,
    LOG_LEVEL: 'warn',
    VIDEO_STORE: 'none',
    ALLOW_PRIVATE_URLS: 'true',
    RATE_LIMIT_REQUESTS_PER_SECOND: '0',
    RATE_LIMIT_CREATES_PER_MINUTE: '0',
    MAX_SUBSCRIPTIONS_PER_TENANT: '0',
    SHUTDOWN_TIMEOUT_MS: '3000',
    // The other scenarios measure the gateway, not the upstream queue (the dispatch scenario runs its own).
    UPSTREAM_MAX_IN_FLIGHT: '100000',
  });
  const gateway = startNode('gateway', 'src/main.ts', {
    nodeFlags: opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${profileName}`] : [],
    env: gatewayEnv(gatewayPort),
  });
  cleanups.push({ name: 'gateway', run: () => gateway.stop(10_000) });
  await waitForHttp(`${gatewayUrl}/readyz`, gateway, 60_000);
  await waitForHttp(`${anchorUrl}/healthz`, anchor, 10_000);

  // 3. A tenant made the way clients get one: the admin mutation.
  const created = await fetch(`${gatewayUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
    body: JSON.stringify({ query: 'mutation { createTenant(input: { name: "bench-live" }) { apiKey } }' }),
  });
  const createdBody = (await created.json()) as { data?: { createTenant?: { apiKey?: string } } };
  const liveApiKey = createdBody.data?.createTenant?.apiKey;
  if (liveApiKey === undefined) throw new Error(`createTenant answered ${created.status}: ${JSON.stringify(createdBody)}`);

  // 4. The scenarios, each measured window marked for the profile.
  const windows: { id: string; window: Window }[] = [];
  const ctx: BenchContext = {
    plan,
    driver: database.driver,
    gateway: { url: gatewayUrl, pid: gateway.pid },
    anchor: { url: anchorUrl, pid: anchor.pid },
    dbAnchor: dbAnchor === null || dbAnchorUrl === null ? null : { url: dbAnchorUrl, pid: dbAnchor.pid },
    simulatorUrl,
    seed: seeded,
    liveApiKey,
    webhookSecret,
    async startSecondGateway() {
      if (database.driver !== 'postgres') return null;
      const port = await freePort();
      const second = startNode('second gateway', 'src/main.ts', { env: { ...gatewayEnv(port), ROLE: 'api' } });
      cleanups.push({ name: 'second gateway', run: () => second.stop(10_000) });
      await waitForHttp(`http://127.0.0.1:${port}/readyz`, second, 60_000);
      return { url: `http://127.0.0.1:${port}`, stop: () => second.stop(10_000).then(() => {}) };
    },
    async window(id, run) {
      const from = monotonicMicros();
      try {
        return await run();
      } finally {
        windows.push({ id, window: { from, to: monotonicMicros() } });
      }
    },
    log,
  };
  const figures: Figure[] = [];
  const details: Record<string, unknown> = {};
  for (const scenario of selected) {
    const began = performance.now();
    try {
      const result = await scenario.run(ctx);
      figures.push(...result.figures);
      details[scenario.id] = result.details;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const gatewayNote = gateway.exited() ? `; the gateway exited:\n${gateway.tail()}` : '';
      log(`${scenario.id} failed: ${message}${gatewayNote}`);
      figures.push({
        id: scenario.id,
        figure: scenario.title,
        metric: '',
        value: null,
        anchor: '',
        anchorValue: null,
        ratio: null,
        error: message.split('\n')[0]?.slice(0, 200) ?? message,
      });
    }
    await database.quiesceSeeded();
    log(`${scenario.id}: ${((performance.now() - began) / 1000).toFixed(1)} s`);
  }

  // 5. Stop everything (the gateway writes its profile as it exits), then report.
  const gatewayExit = await gateway.stop(15_000);
  await cleanUp();
  const elapsedSeconds = (performance.now() - started) / 1000;

  let profile: { file: string; scenarios: Record<string, ProfileSummary> } | null = null;
  const profileFile = join(profileDir, profileName);
  if (opts.profile) {
    if (!existsSync(profileFile)) {
      log(`no profile at ${profileFile} (gateway exit code ${gatewayExit})`);
    } else {
      const cpuProfile = readProfile(profileFile);
      const span = profileSpan(cpuProfile);
      const aligned = windows.every(({ window }) => window.from >= span.from - 1e6 && window.to <= span.to + 1e6);
      const scenarios: Record<string, ProfileSummary> = {};
      if (!aligned) log('profile clock does not match the runner clock; summarising the whole profile instead');
      for (const { id, window } of aligned ? windows : [{ id: 'whole run', window: span }]) {
        scenarios[id] = summariseProfile(cpuProfile, projectRoot, window);
      }
      profile = { file: profileFile, scenarios };
    }
  }

  const describeSizes = [
    `tasks ${powerOfTen(plan.rows.small)} / ${powerOfTen(plan.rows.large)} rows, ${powerOfTen(plan.rows.usageEvents)} usage events`,
    `${plan.delivery.subscribers.toLocaleString('en-US')} delivery subscribers, ${plan.memory.subscriptions.toLocaleString('en-US')} idle subscriptions`,
    `throughput ${plan.throughput.connections} connections × ${plan.throughput.seconds} s (warm-up ${plan.throughput.warmupSeconds} s)`,
    `latency ${plan.latency.connections} connection × ${plan.latency.seconds} s (warm-up ${plan.latency.warmupSeconds} s)`,
  ];
  const title =
    `Omni Gateway benchmarks — ${plan.mode} mode${plan.mode === 'quick' ? ' (reduced sizes: not for quoting)' : ''}, ` +
    `${database.driver === 'postgres' ? database.serverVersion : `PGlite (${database.serverVersion})`}, ` +
    `${meta.machine.cores} × ${meta.machine.cpu}, Node ${meta.machine.node}, commit ${meta.commit}, ` +
    `load average at start ${meta.machine.loadAverageAtStart.join(' ')}, ${elapsedSeconds.toFixed(0)} s`;
  console.log(`\n${title}\n${describeSizes.join('; ')}\n\n${renderTable(figures)}\n`);
  if (profile !== null) printProfile(profile.scenarios, profile.file);

  mkdirSync(resultsDir, { recursive: true });
  const report = {
    ...meta,
    mode: plan.mode,
    database: { driver: database.driver, version: database.serverVersion },
    plan,
    scenarios: selected.map((scenario) => scenario.id),
    elapsedSeconds: Number(elapsedSeconds.toFixed(1)),
    figures,
    details,
    profile,
  };
  // Only a complete full run replaces the committed results; quick and partial runs go beside them.
  const resultsFile = plan.mode === 'quick' ? 'latest-quick.json' : opts.only === null ? 'latest.json' : 'latest-partial.json';
  writeFileSync(join(resultsDir, resultsFile), `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote bench/results/${resultsFile} (${elapsedSeconds.toFixed(0)} s in all)`);
  return figures.some((f) => f.error !== undefined) ? 1 : 0;
}

function printProfile(scenarios: Record<string, ProfileSummary>, file: string): void {
  console.log(`Gateway CPU profile (${file}): self time per function, measured windows only, idle excluded\n`);
  for (const [id, summary] of Object.entries(scenarios)) {
    const areas = summary.byArea
      .slice(0, 6)
      .map((area) => `${area.area} ${(area.share * 100).toFixed(0)}%`)
      .join(', ');
    console.log(`${id}: busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms — ${areas}`);
    for (const entry of summary.top.slice(0, 10)) {
      console.log(
        `  ${(entry.share * 100).toFixed(1).padStart(5)}%  ${entry.selfMs.toFixed(0).padStart(6)} ms  ${entry.function}  ${entry.where}`,
      );
    }
    console.log('');
  }
}

main().then(
  async (code) => {
    await cleanUp();
    process.exit(code);
  },
  async (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    await cleanUp();
    process.exit(1);
  },
);
