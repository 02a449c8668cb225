// Soak run (issue 10, item 4): a gateway process and a simulator process under steady creates,
// upstream callbacks, light upstream faults and 1,000 WebSocket subscribers for N minutes; reports
// errors, lost updates (a task a subscriber watches that never reached its final state there) and
// the gateway's RSS over time, from /proc/<pid>/status.
//
//   npm run soak -- --minutes 1 [--subscribers 1000] [--rate 5] [--tenants 10] [--no-faults]
//
// With DATABASE_URL set it runs on a fresh database created on that server (dropped afterwards),
// else on PGlite in a temp DATA_DIR. Exits 1 when there were errors or lost updates.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import type { Client } from 'graphql-ws';
import postgres from 'postgres';
import WebSocket from 'ws';
import { freePort } from './support/processes.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const ADMIN = `soak-admin-${randomBytes(12).toString('hex')}`;
const UPSTREAM_KEY = 'soak-upstream-key';
const FINAL = new Set(['SUCCEEDED', 'FAILED']);

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    subscribers: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '5' },
    tenants: { type: 'string', default: '10' },
    'no-faults': { type: 'boolean', default: false },
    'drain-seconds': { type: 'string', default: '60' },
  },
  strict: true,
});
const minutes = Number(args.minutes);
const subscriberCount = Number(args.subscribers);
const createsPerSecond = Number(args.rate);
const tenantCount = Number(args.tenants);
const drainSeconds = Number(args['drain-seconds']);
for (const [name, value] of Object.entries({ minutes, subscriberCount, createsPerSecond, tenantCount, drainSeconds })) {
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`soak: --${name} must be a positive number`);
    process.exit(2);
  }
}

// --- processes -----------------------------------------------------------------------------

type Child = { process: ChildProcess; tail: string[]; line(pattern: RegExp, timeoutMs: number): Promise<string> };

/** Spawns a node script, keeping only the last lines of its output (a soak may run for hours). */
function start(script: string, argv: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, [join(root, script), ...argv], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const watchers = new Set<(line: string) => void>();
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 200) tail.shift();
        for (const watch of watchers) watch(line);
      }
    });
  }
  return {
    process: child,
    tail,
    line: (pattern, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => done(new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${tail.join('\n')}`)),
          timeoutMs,
        );
        const onExit = (code: number | null) => done(new Error(`${script} exited (${code}):\n${tail.join('\n')}`));
        const watch = (line: string) => pattern.test(line) && done(null, line);
        const done = (error: Error | null, line?: string) => {
          clearTimeout(timer);
          watchers.delete(watch);
          child.off('exit', onExit);
          if (error) reject(error);
          else resolve(line!);
        };
        watchers.add(watch);
        child.once('exit', onExit);
      }),
  };
}

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] === undefined ? Number.NaN : Number(match[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

async function graphql(url: string, token: string, query: string, variables: Record<string, unknown> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  let body: { data?: any; errors?: { message: string }[] } | null = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: response.status, text, body };
}

// --- state ---------------------------------------------------------------------------------

type Subscriber = { tenant: number; client: Client; finals: Set<string>; closed: number; warm: boolean };
const warmUps = new Set<string>();
const CREATE =
  'mutation ($input: CreateOmniVideoInput!) { createOmniVideo(input: $input) { __typename ... on CreateOmniVideoSuccess { task { id } } ... on Error { message } } }';
type Created = { tenant: number; createdAt: number; perTaskFinal: string | null };

const errors = new Map<string, number>();
function countError(kind: string): void {
  errors.set(kind, (errors.get(kind) ?? 0) + 1);
}
const created = new Map<string, Created>();
const subscribers: Subscriber[] = [];
let settledTasks = 0; // tasks final at the gateway and at all their subscribers, pruned from memory
const samples: { at: number; gatewayMb: number; simulatorMb: number; driverMb: number; tasks: number; finals: number }[] = [];

async function main(): Promise<number> {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'omni-soak-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  let databaseUrl: string | null = null;
  const serverUrl = process.env.DATABASE_URL || null;
  if (serverUrl !== null) {
    const name = `og_soak_${randomBytes(5).toString('hex')}`;
    const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database ${name}`);
    await admin.end();
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
    cleanups.push(async () => {
      const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    });
  }

  try {
    const simulator = start(
      'src/simulator/main.ts',
      ['--port', '0', '--api-key', UPSTREAM_KEY, '--processing-ms', '500', '--finish-ms', '2000', '--video-bytes', '4096'],
      {},
    );
    cleanups.push(() => simulator.process.kill('SIGKILL'));
    const simulatorUrl = /listening on (\S+)/.exec(await simulator.line(/listening on/, 15_000))![1]!;

    const port = await freePort();
    const gateway = start('src/main.ts', [], {
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_API_KEY: ADMIN,
      COMETAPI_KEY: UPSTREAM_KEY,
      COMETAPI_BASE_URL: simulatorUrl,
      PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
      DATA_DIR: dataDir,
      ...(databaseUrl === null ? {} : { DATABASE_URL: databaseUrl }),
      VIDEO_STORE: 'none',
      LOG_LEVEL: 'warn',
      PENDING_RECHECK_SECONDS: '5',
      RATE_LIMIT_REQUESTS_PER_SECOND: '0',
      RATE_LIMIT_CREATES_PER_MINUTE: '0',
      MAX_SUBSCRIPTIONS_PER_TENANT: String(subscriberCount * 4),
      // e.g. SOAK_GATEWAY_NODE_OPTIONS='--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=/tmp' to inspect a leak.
      ...(process.env.SOAK_GATEWAY_NODE_OPTIONS ? { NODE_OPTIONS: process.env.SOAK_GATEWAY_NODE_OPTIONS } : {}),
    });
    cleanups.push(() => gateway.process.kill('SIGKILL'));
    const url = `http://127.0.0.1:${port}`;
    const started = Date.now();
    for (;;) {
      const ready = await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (gateway.process.exitCode !== null || Date.now() - started > 60_000)
        throw new Error(`gateway did not start:\n${gateway.tail.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const pid = gateway.process.pid;
    const bootMb = rssMb(pid);
    console.log(`soak: gateway pid ${pid} on ${url} (${databaseUrl === null ? 'PGlite' : 'PostgreSQL'}), simulator ${simulatorUrl}`);

    const apiKeys: string[] = [];
    for (let i = 0; i < tenantCount; i += 1) {
      const answer = await graphql(url, ADMIN, 'mutation ($name: String!) { createTenant(input: { name: $name }) { apiKey } }', {
        name: `Soak ${i}`,
      });
      const key = answer.body?.data?.createTenant?.apiKey as string | undefined;
      if (key === undefined) throw new Error(`createTenant: ${answer.text}`);
      apiKeys.push(key);
    }

    // 1,000 subscribers, one WebSocket each, watching every change of their tenant.
    const wsUrl = `ws://127.0.0.1:${port}/graphql`;
    for (let batch = 0; batch < subscriberCount; batch += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, subscriberCount - batch) }, async (_, offset) => {
          const tenant = (batch + offset) % tenantCount;
          const client = createClient({
            url: wsUrl,
            webSocketImpl: WebSocket,
            connectionParams: { authorization: `Bearer ${apiKeys[tenant]}` },
            retryAttempts: 0,
            lazy: false,
          });
          const subscriber: Subscriber = { tenant, client, finals: new Set(), closed: 0, warm: false };
          client.on('closed', () => {
            subscriber.closed += 1;
          });
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('subscription not acknowledged within 30 s')), 30_000);
            client.subscribe(
              { query: 'subscription { omniTaskUpdated { id status } }' },
              {
                next: (value) => {
                  const task = value.data?.omniTaskUpdated as { id: string; status: string } | undefined;
                  if (task && warmUps.has(task.id)) subscriber.warm = true;
                  else if (task && FINAL.has(task.status)) subscriber.finals.add(task.id);
                  if (value.errors) countError(`subscription error: ${value.errors[0]?.message}`);
                },
                error: (error) => countError(`subscription ended with an error: ${String((error as Error)?.message ?? error)}`),
                complete: () => countError('tenant subscription completed unexpectedly'),
              },
            );
            const off = client.on('connected', () => {
              off();
              clearTimeout(timer);
              resolve();
            });
          });
          subscribers.push(subscriber);
        }),
      );
    }
    // graphql-ws has no acknowledgement of a subscription: a warm-up task per tenant, seen by every
    // subscriber of that tenant, shows that all of them are attached before the load starts.
    for (let tenant = 0; tenant < tenantCount; tenant += 1) {
      const answer = await graphql(url, apiKeys[tenant]!, CREATE, {
        input: { prompt: `Warm-up ${tenant}`, mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 },
      });
      const id = answer.body?.data?.createOmniVideo?.task?.id as string | undefined;
      if (id === undefined) throw new Error(`warm-up create: ${answer.text}`);
      warmUps.add(id);
    }
    const warmStart = Date.now();
    while (!subscribers.every((subscriber) => subscriber.warm)) {
      if (Date.now() - warmStart > 60_000)
        throw new Error(`only ${subscribers.filter((s) => s.warm).length} subscribers saw their warm-up task`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    console.log(`soak: ${subscribers.length} subscribers attached; driving ${createsPerSecond} creates/s for ${minutes} min`);

    // Light upstream faults, through the simulator's control routes.
    const faults = args['no-faults']
      ? null
      : setInterval(() => {
          void fetch(`${simulatorUrl}/__control/faults`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify([
              { op: 'create', kind: 'http500' },
              { op: 'create', kind: 'reset' },
              { op: 'create', kind: 'http429_1302' },
              { op: 'get', kind: 'http500' },
            ]),
          }).catch(() => countError('fault injection failed'));
        }, 10_000);

    const loadStart = Date.now();
    const idleMb = rssMb(pid);
    console.log(
      `soak: gateway rss with ${subscribers.length} idle subscribers: ${idleMb.toFixed(1)} MB (before them: ${bootMb.toFixed(1)} MB)`,
    );
    const sampler = setInterval(() => {
      samples.push({
        at: Math.round((Date.now() - loadStart) / 1000),
        gatewayMb: rssMb(pid),
        simulatorMb: rssMb(simulator.process.pid),
        driverMb: process.memoryUsage.rss() / 1024 / 1024,
        tasks: created.size + settledTasks,
        finals: settledTasks + [...created.values()].filter((task) => task.perTaskFinal !== null).length,
      });
      const last = samples.at(-1)!;
      console.log(
        `soak: t=${String(last.at).padStart(4)}s gateway rss ${last.gatewayMb.toFixed(1)} MB, simulator ${last.simulatorMb.toFixed(1)} MB, ` +
          `driver ${last.driverMb.toFixed(1)} MB; tasks ${last.tasks} (final ${last.finals}); errors ${[...errors.values()].reduce((a, b) => a + b, 0)}`,
      );
      prune();
    }, 5_000);

    // Creates at a steady rate, round robin over the tenants; each is also watched by id.
    const inFlight = new Set<Promise<void>>();
    let sequence = 0;
    while (Date.now() - loadStart < minutes * 60_000) {
      if (gateway.process.exitCode !== null) throw new Error(`gateway exited (${gateway.process.exitCode}):\n${gateway.tail.join('\n')}`);
      const tenant = sequence % tenantCount;
      const prompt = sequence % 10 === 9 ? `Soak task ${sequence} [[fail]]` : `Soak task ${sequence}`;
      sequence += 1;
      const job = createAndWatch(url, apiKeys[tenant]!, tenant, prompt).finally(() => inFlight.delete(job));
      inFlight.add(job);
      const next = loadStart + (sequence * 1000) / createsPerSecond;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
    }
    console.log(`soak: load done (${sequence} creates); draining up to ${drainSeconds} s`);
    const drainStart = Date.now();
    while (Date.now() - drainStart < drainSeconds * 1000) {
      prune();
      if (inFlight.size === 0 && created.size === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    clearInterval(sampler);
    if (faults) clearInterval(faults);

    // What is left is lost: not final at the gateway, or final there but not at some subscriber.
    let lost = 0;
    const lostExamples: string[] = [];
    for (const [id, task] of created) {
      const answer = await graphql(url, apiKeys[task.tenant]!, 'query ($id: ID!) { omniTask(id: $id) { status } }', { id }).catch(
        () => null,
      );
      const status = (answer?.body?.data?.omniTask?.status as string | undefined) ?? 'unknown';
      const missing =
        subscribers.filter((s) => s.tenant === task.tenant && !s.finals.has(id)).length + (task.perTaskFinal === null ? 1 : 0);
      lost += missing;
      if (lostExamples.length < 5) lostExamples.push(`${id}: gateway says ${status}, missing at ${missing} subscriber(s)`);
    }
    const closures = subscribers.reduce((sum, s) => sum + s.closed, 0);
    const peak = Math.max(...samples.map((s) => s.gatewayMb));
    const first = samples[0]?.gatewayMb ?? Number.NaN;
    const lastSample = samples.at(-1)?.gatewayMb ?? Number.NaN;
    const totalErrors = [...errors.values()].reduce((a, b) => a + b, 0);

    console.log('\nsoak summary');
    console.log(`  duration            ${minutes} min load + ${((Date.now() - drainStart) / 1000).toFixed(1)} s drain`);
    console.log(`  database            ${databaseUrl === null ? 'PGlite' : 'PostgreSQL'}`);
    console.log(`  creates             ${sequence} (${settledTasks} settled everywhere)`);
    console.log(`  subscribers         ${subscribers.length} WebSockets (tenant-wide), plus one per-task subscription per create`);
    console.log(`  socket closures     ${closures}`);
    console.log(`  errors              ${totalErrors}${totalErrors > 0 ? ` ${JSON.stringify(Object.fromEntries(errors))}` : ''}`);
    console.log(`  lost updates        ${lost}${lostExamples.length > 0 ? `\n    ${lostExamples.join('\n    ')}` : ''}`);
    console.log(
      `  gateway RSS (MB)    ${bootMb.toFixed(1)} at start, ${idleMb.toFixed(1)} with idle subscribers; under load first ${first.toFixed(1)}, peak ${peak.toFixed(1)}, last ${lastSample.toFixed(1)}`,
    );
    console.log('  RSS over time (s: gateway MB)');
    console.log(`    ${samples.map((s) => `${s.at}: ${s.gatewayMb.toFixed(0)}`).join(', ')}`);

    await Promise.all(subscribers.map((s) => s.client.dispose()));
    gateway.process.kill('SIGTERM');
    const exit = await new Promise<number | null>((resolve) => {
      if (gateway.process.exitCode !== null) resolve(gateway.process.exitCode);
      else gateway.process.once('exit', (code) => resolve(code));
    });
    console.log(`  gateway exit        ${exit} (SIGTERM)`);
    return totalErrors === 0 && lost === 0 && closures === 0 && exit === 0 ? 0 : 1;
  } finally {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
  }
}

async function createAndWatch(url: string, apiKey: string, tenant: number, prompt: string): Promise<void> {
  let answer;
  try {
    answer = await graphql(url, apiKey, CREATE, { input: { prompt, mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 } });
  } catch (error) {
    countError(`create transport: ${String((error as Error).message)}`);
    return;
  }
  const result = answer.body?.data?.createOmniVideo as { __typename: string; task?: { id: string }; message?: string } | undefined;
  if (result?.__typename !== 'CreateOmniVideoSuccess' || result.task === undefined) {
    countError(`create: ${answer.status} ${result?.__typename ?? answer.text.slice(0, 120)}`);
    return;
  }
  const id = result.task.id;
  const task: Created = { tenant, createdAt: Date.now(), perTaskFinal: null };
  created.set(id, task);
  // The per-id form over one of the tenant's sockets: current state, then changes, then completion.
  const owners = subscribers.filter((s) => s.tenant === tenant);
  const owner = owners[Math.floor(Math.random() * owners.length)]!;
  await new Promise<void>((resolve) => {
    owner.client.subscribe(
      { query: 'subscription ($id: ID) { omniTaskUpdated(id: $id) { status } }', variables: { id } },
      {
        next: (value) => {
          const status = (value.data?.omniTaskUpdated as { status?: string } | undefined)?.status;
          if (status && FINAL.has(status)) task.perTaskFinal = status;
          if (value.errors) countError(`per-task subscription: ${value.errors[0]?.message}`);
        },
        error: (error) => {
          countError(`per-task subscription ended with an error: ${String((error as Error)?.message ?? error)}`);
          resolve();
        },
        complete: () => resolve(),
      },
    );
  });
}

/** Forgets tasks that are final at their per-task watcher and at every subscriber of their tenant. */
function prune(): void {
  for (const [id, task] of created) {
    if (task.perTaskFinal === null) continue;
    const everywhere = subscribers.every((s) => s.tenant !== task.tenant || s.finals.has(id));
    if (!everywhere) continue;
    for (const s of subscribers) s.finals.delete(id);
    created.delete(id);
    settledTasks += 1;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error('soak failed:', error);
    process.exit(1);
  },
);
