import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { toGlobalId } from '../src/ids.ts';
import { webhookToken } from '../src/webhooks/tokens.ts';
import type { Seed, WatchableTask } from './support/database.ts';
import { loadProblem, measureHttp, measureRequests } from './support/load.ts';
import type { HttpLoad, LoadResult } from './support/load.ts';
import { rssKiB } from './support/processes.ts';
import { figure } from './support/report.ts';
import type { Figure } from './support/report.ts';
import { median, percentiles, sleep } from './support/stats.ts';
import type { Percentiles } from './support/stats.ts';
import WebSocket from 'ws';
import { openSwarm } from './support/subscribers.ts';
import { measureDispatch } from './dispatch.ts';
import type { NextPayload, Operation } from './support/subscribers.ts';

export type Plan = {
  mode: 'quick' | 'full';
  rows: { small: number; large: number; usageEvents: number };
  throughput: { connections: number; warmupSeconds: number; seconds: number };
  latency: { connections: number; warmupSeconds: number; seconds: number };
  /** Delivery: live subscribers, measured fan-out rounds, measured per-task callbacks. */
  delivery: { subscribers: number; rounds: number; callbacks: number };
  memory: { subscriptions: number };
  /** Callback ingestion: concurrent connections, discarded and measured callbacks (each to its own task). */
  ingest: { connections: number; warmup: number; callbacks: number };
  /** Resume: changes made while a subscriber is away, then replayed to it. */
  resume: { changes: number };
  /** Outbound webhooks: changes made at once (deliveries/s), then one at a time (latency). */
  webhooks: { burst: number; sequential: number };
};

/** Probe rounds that may go by before every tenant-wide subscriber is registered, then warm-up rounds. */
export const FANOUT_PROBES = 5;
export const FANOUT_WARMUPS = 2;
const PER_TASK_WARMUPS = 3;

export type BenchContext = {
  plan: Plan;
  driver: 'postgres' | 'pglite';
  gateway: { url: string; pid: number };
  anchor: { url: string; pid: number };
  /** The database anchors (bench/anchor-db.ts): PostgreSQL only. */
  dbAnchor: { url: string; pid: number } | null;
  simulatorUrl: string;
  seed: Seed;
  /** The key of a tenant created through the admin mutation: it creates tasks. */
  liveApiKey: string;
  webhookSecret: string;
  /** A second gateway process on the same database (ROLE=api; PostgreSQL only, else null). */
  startSecondGateway(): Promise<{ url: string; stop(): Promise<void> } | null>;
  /** Marks the measured part of a scenario, so a CPU profile can be cut to it. */
  window<T>(id: string, run: () => Promise<T>): Promise<T>;
  log(message: string): void;
};

export type ScenarioResult = { figures: Figure[]; details: Record<string, unknown> };

export type Scenario = { id: string; title: string; run(ctx: BenchContext): Promise<ScenarioResult> };

// --- operations -------------------------------------------------------------------------------

const TASK_QUERY = `query Task($id: ID!) {
  omniTask(id: $id) { id status version prompt mode aspectRatio durationSeconds createdAt updatedAt completedAt videos { id url durationSeconds } }
}`;
const LIST_QUERY = `query Tasks($first: Int!, $after: String) {
  omniTasks(first: $first, after: $after) {
    edges { cursor node { id status prompt createdAt videos { url } } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const ANCHOR_TASK_QUERY = `query Task($id: ID!) {
  task(id: $id) { id status version prompt mode aspectRatio durationSeconds createdAt updatedAt completedAt videos { id url durationSeconds } }
}`;
const ANCHOR_LIST_QUERY = `query Tasks($tenantId: ID!, $first: Int!) {
  tasks(tenantId: $tenantId, first: $first) { id status prompt createdAt videos { url } }
}`;
const USAGE_QUERY = `{ viewer { usage { succeededTasks failedTasks videoSeconds units byMode { mode tasks videoSeconds units } } } }`;
const CREATE_MUTATION = `mutation Create($input: CreateOmniVideoInput!) {
  createOmniVideo(input: $input) {
    __typename
    ... on CreateOmniVideoSuccess { task { id status version upstreamTaskId } }
    ... on Error { message }
  }
}`;
const PROMPT = 'A paper boat drifts down a rain-soaked street at dusk, neon reflections, slow dolly shot';
const TASK_UPDATES = 'subscription Watch($id: ID!) { omniTaskUpdated(id: $id) { id status version updatedAt } }';
const TENANT_UPDATES = 'subscription Tenant { omniTaskUpdated { id status version updatedAt } }';
const TICK = 'subscription Tick($key: String) { tick(key: $key) { key seq } }';

const graphqlBody = (query: string, variables: Record<string, unknown> = {}) => JSON.stringify({ query, variables });
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const okGraphql = (marker: string) => (body: string) => body.includes(marker) && !body.includes('"errors"');

function describeLatency(result: LoadResult): Record<string, unknown> {
  return {
    requestsPerSecond: Math.round(result.requestsPerSecond),
    latencyMs: result.latencyMs,
    responses: result.responses,
    seconds: Number(result.seconds.toFixed(2)),
    connections: result.connections,
    problems: loadProblem(result),
  };
}

function problemOf(...results: LoadResult[]): string | undefined {
  const problems = results.map(loadProblem).filter((problem): problem is string => problem !== null);
  return problems.length > 0 ? problems.join(' | ') : undefined;
}

function latencyFigures(
  id: string,
  name: string,
  measured: Percentiles,
  anchorName: string,
  anchor: Percentiles,
  extra: { note?: (which: 'p50' | 'p99') => string | undefined; error?: string } = {},
): Figure[] {
  return (['p50', 'p99'] as const).map((which) => {
    const note = extra.note?.(which);
    const error = extra.error;
    return figure({
      id: `${id}.${which}`,
      figure: `${name} ${which}`,
      metric: 'ms',
      value: measured[which],
      anchor: `${anchorName} ${which}`,
      anchorValue: anchor[which],
      ...(note === undefined ? {} : { note }),
      ...(error === undefined ? {} : { error }),
    });
  });
}

// --- webhooks ---------------------------------------------------------------------------------

/**
 * A Kling "processing" callback for a seeded task, posted to the URL the gateway gave the upstream.
 * Not a final one: a final status in a callback is only a hint, confirmed by an upstream read
 * before anything is recorded, and these seeded tasks exist in no upstream. A callback records
 * "processing" on its own word, so this measures the webhook → subscriber path itself.
 */
function processingCallback(ctx: BenchContext, task: WatchableTask): { path: string; body: string } {
  const now = Date.now();
  return {
    path: `/webhooks/kling/${task.id}/${webhookToken(ctx.webhookSecret, task.id)}`,
    body: JSON.stringify({
      task_id: task.upstreamTaskId,
      task_status: 'processing',
      task_status_msg: '',
      created_at: now - 60_000,
      updated_at: now,
      task_info: { external_task_id: task.id },
      task_result: {},
    }),
  };
}

async function postProcessing(ctx: BenchContext, task: WatchableTask): Promise<void> {
  const { path, body } = processingCallback(ctx, task);
  const response = await fetch(`${ctx.gateway.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await response.text();
  if (response.status !== 200 || !text.includes('"changed":true')) {
    throw new Error(`webhook for ${task.id} answered ${response.status} ${text}`);
  }
}

async function publishTick(ctx: BenchContext, key: string, seq: number): Promise<void> {
  const response = await fetch(`${ctx.anchor.url}/publish?key=${encodeURIComponent(key)}&seq=${seq}`, { method: 'POST' });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`anchor publish answered ${response.status}`);
}

function processingUpdate(payload: NextPayload, globalId: string): boolean {
  const update = payload.data?.omniTaskUpdated as { id?: string; status?: string } | undefined;
  return update?.id === globalId && update.status === 'PROCESSING';
}

function tickOf(payload: NextPayload): { key?: string; seq?: number } | undefined {
  return payload.data?.tick as { key?: string; seq?: number } | undefined;
}

// --- memory -----------------------------------------------------------------------------------

async function settledRss(pid: number): Promise<number> {
  await sleep(1_000);
  const samples: number[] = [];
  for (let i = 0; i < 5; i += 1) {
    samples.push(rssKiB(pid));
    await sleep(250);
  }
  return median(samples);
}

type MemoryResult = { beforeKiB: number; afterKiB: number; perSubscriptionKiB: number; openSeconds: number; subscriptions: number };

async function idleSubscriptionMemory(
  pid: number,
  url: string,
  authorization: string | null,
  count: number,
  operation: (index: number) => Operation,
): Promise<MemoryResult> {
  const beforeKiB = await settledRss(pid);
  const swarm = await openSwarm({ url, authorization, count, operation, untilFirstNext: true, concurrency: 50, timeoutMs: 120_000 });
  try {
    await sleep(1_000);
    const afterKiB = await settledRss(pid);
    if (swarm.problems.length > 0) throw new Error(`subscribers failed: ${swarm.problems.slice(0, 3).join('; ')}`);
    return {
      beforeKiB,
      afterKiB,
      perSubscriptionKiB: (afterKiB - beforeKiB) / count,
      openSeconds: Number((swarm.openMs / 1000).toFixed(2)),
      subscriptions: count,
    };
  } finally {
    await swarm.close();
  }
}

const memory: Scenario = {
  id: 'memory',
  title: 'RSS per idle WebSocket subscription',
  async run(ctx) {
    const count = ctx.plan.memory.subscriptions;
    const tasks = ctx.seed.watch.tasks;
    ctx.log(`memory: opening ${count} per-task subscriptions on the gateway`);
    const gateway = await ctx.window('memory.gateway', () =>
      idleSubscriptionMemory(ctx.gateway.pid, `${ctx.gateway.url}/graphql`, `Bearer ${ctx.seed.watch.apiKey}`, count, (i) => ({
        query: TASK_UPDATES,
        variables: { id: toGlobalId('OmniTask', tasks[i % tasks.length]!.id) },
      })),
    );
    ctx.log(`memory: opening ${count} subscriptions on the anchor`);
    const anchor = await idleSubscriptionMemory(ctx.anchor.pid, `${ctx.anchor.url}/graphql`, null, count, (i) => ({
      query: TICK,
      variables: { key: `idle-${i}` },
    }));
    const mib = (kib: number) => (kib / 1024).toFixed(0);
    return {
      figures: [
        figure({
          id: 'memory.perSubscription',
          figure: `RSS per idle WS subscription (${count.toLocaleString('en-US')}, per-task)`,
          metric: 'KiB',
          value: gateway.perSubscriptionKiB,
          anchor: 'bare yoga + graphql-ws subscription',
          anchorValue: anchor.perSubscriptionKiB,
          note: `gateway RSS ${mib(gateway.beforeKiB)} → ${mib(gateway.afterKiB)} MiB; one WebSocket each`,
        }),
      ],
      details: { gateway, anchor },
    };
  },
};

// --- delivery: fan-out ------------------------------------------------------------------------

type FanOutTarget = {
  url: string;
  authorization: string | null;
  operation: Operation;
  /** Causes the change of round `round` and resolves when the trigger request was answered. */
  trigger(round: number): Promise<void>;
  matches(payload: NextPayload, round: number): boolean;
};

type FanOutResult = {
  latencyMs: Percentiles;
  triggerMs: Percentiles;
  missed: number;
  rounds: number;
  subscribers: number;
  openSeconds: number;
};

async function fanOut(target: FanOutTarget, subscribers: number, rounds: number): Promise<FanOutResult> {
  const swarm = await openSwarm({
    url: target.url,
    authorization: target.authorization,
    count: subscribers,
    operation: () => target.operation,
    untilFirstNext: false,
    concurrency: 50,
    timeoutMs: 60_000,
  });
  try {
    const received = new Uint8Array(subscribers);
    let round = -1;
    let got = 0;
    let t0 = 0;
    let measuring = false;
    let wake: (() => void) | null = null;
    const samples: number[] = [];
    const triggers: number[] = [];
    swarm.onNext = (index, payload, at) => {
      if (round < 0 || received[index] === 1 || !target.matches(payload, round)) return;
      received[index] = 1;
      got += 1;
      if (measuring) samples.push(at - t0);
      if (got === subscribers) wake?.();
    };
    const runRound = async (r: number, timeoutMs: number): Promise<number> => {
      received.fill(0);
      got = 0;
      round = r;
      const everyone = new Promise<void>((resolve) => {
        wake = resolve;
      });
      t0 = performance.now();
      await target.trigger(r);
      triggers.push(performance.now() - t0);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([everyone, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
      wake = null;
      await sleep(20);
      return got;
    };
    // Subscriptions carry no acknowledgement: probe until one round reaches every subscriber.
    let next = 0;
    let reachedAll = false;
    while (!reachedAll && next < FANOUT_PROBES) reachedAll = (await runRound(next++, 5_000)) === subscribers;
    if (!reachedAll) throw new Error(`after ${FANOUT_PROBES} probes only ${got} of ${subscribers} subscribers receive changes`);
    for (let i = 0; i < FANOUT_WARMUPS; i += 1) await runRound(next++, 15_000);
    triggers.length = 0;
    measuring = true;
    let missed = 0;
    for (let i = 0; i < rounds; i += 1) missed += subscribers - (await runRound(next++, 15_000));
    if (swarm.problems.length > 0) throw new Error(`subscribers failed: ${swarm.problems.slice(0, 3).join('; ')}`);
    return {
      latencyMs: percentiles(samples),
      triggerMs: percentiles(triggers),
      missed,
      rounds,
      subscribers,
      openSeconds: Number((swarm.openMs / 1000).toFixed(2)),
    };
  } finally {
    await swarm.close();
  }
}

const deliveryFanOut: Scenario = {
  id: 'fanout',
  title: 'webhook → subscriber delivery, fan-out',
  async run(ctx) {
    const { subscribers, rounds } = ctx.plan.delivery;
    const tasks = ctx.seed.fanout.tasks;
    ctx.log(`fan-out: ${subscribers} tenant-wide subscribers on the gateway, ${rounds} callbacks`);
    const gateway = await ctx.window('fanout.gateway', () =>
      fanOut(
        {
          url: `${ctx.gateway.url}/graphql`,
          authorization: `Bearer ${ctx.seed.fanout.apiKey}`,
          operation: { query: TENANT_UPDATES },
          trigger: (round) => postProcessing(ctx, tasks[round]!),
          matches: (payload, round) => processingUpdate(payload, toGlobalId('OmniTask', tasks[round]!.id)),
        },
        subscribers,
        rounds,
      ),
    );
    ctx.log(`fan-out: ${subscribers} subscribers on the anchor`);
    const anchor = await fanOut(
      {
        url: `${ctx.anchor.url}/graphql`,
        authorization: null,
        operation: { query: TICK },
        trigger: (round) => publishTick(ctx, '*', round + 1),
        matches: (payload, round) => tickOf(payload)?.seq === round + 1,
      },
      subscribers,
      rounds,
    );
    const error = gateway.missed > 0 ? `${gateway.missed} deliveries missed` : undefined;
    return {
      figures: latencyFigures(
        'fanout',
        `webhook → ${subscribers.toLocaleString('en-US')} tenant-wide subscribers`,
        gateway.latencyMs,
        'bare yoga publish → same',
        anchor.latencyMs,
        {
          note: (which) =>
            which === 'p50'
              ? `${rounds} callbacks × ${subscribers} deliveries; webhook answered in p50 ${gateway.triggerMs.p50.toFixed(1)} ms`
              : undefined,
          ...(error === undefined ? {} : { error }),
        },
      ),
      details: { gateway, anchor },
    };
  },
};

// --- delivery: per task -----------------------------------------------------------------------

type PerTaskTarget = {
  url: string;
  authorization: string | null;
  operation(index: number): Operation;
  trigger(index: number): Promise<void>;
  matches(payload: NextPayload, index: number): boolean;
};

type PerTaskResult = { latencyMs: Percentiles; callbacks: number; subscribers: number; openSeconds: number };

/** Every subscriber watches its own task; changes come one at a time, each awaited by its one subscriber. */
async function perTask(target: PerTaskTarget, subscribers: number, callbacks: number): Promise<PerTaskResult> {
  const swarm = await openSwarm({
    url: target.url,
    authorization: target.authorization,
    count: subscribers,
    operation: (index) => target.operation(index),
    untilFirstNext: true,
    concurrency: 50,
    timeoutMs: 60_000,
  });
  try {
    const total = callbacks + PER_TASK_WARMUPS;
    const samples: number[] = [];
    let expecting = -1;
    let arrived: ((at: number) => void) | null = null;
    swarm.onNext = (index, payload, at) => {
      if (index === expecting && target.matches(payload, index)) arrived?.(at);
    };
    for (let j = 0; j < total; j += 1) {
      const index = Math.floor((j * subscribers) / total);
      expecting = index;
      let timer: NodeJS.Timeout | undefined;
      const delivered = new Promise<number>((resolve, reject) => {
        arrived = resolve;
        timer = setTimeout(() => reject(new Error(`subscriber ${index} got no change within 10 s`)), 10_000);
      });
      const t0 = performance.now();
      await target.trigger(index);
      const at = await delivered.finally(() => clearTimeout(timer));
      if (j >= PER_TASK_WARMUPS) samples.push(at - t0);
      await sleep(5);
    }
    if (swarm.problems.length > 0) throw new Error(`subscribers failed: ${swarm.problems.slice(0, 3).join('; ')}`);
    return { latencyMs: percentiles(samples), callbacks, subscribers, openSeconds: Number((swarm.openMs / 1000).toFixed(2)) };
  } finally {
    await swarm.close();
  }
}

const deliveryPerTask: Scenario = {
  id: 'pertask',
  title: 'webhook → subscriber delivery, per task',
  async run(ctx) {
    const { subscribers, callbacks } = ctx.plan.delivery;
    const tasks = ctx.seed.watch.tasks;
    ctx.log(`per-task: ${subscribers} per-task subscribers on the gateway, ${callbacks} callbacks one at a time`);
    const gateway = await ctx.window('pertask.gateway', () =>
      perTask(
        {
          url: `${ctx.gateway.url}/graphql`,
          authorization: `Bearer ${ctx.seed.watch.apiKey}`,
          operation: (i) => ({ query: TASK_UPDATES, variables: { id: toGlobalId('OmniTask', tasks[i]!.id) } }),
          trigger: (i) => postProcessing(ctx, tasks[i]!),
          matches: (payload, i) => processingUpdate(payload, toGlobalId('OmniTask', tasks[i]!.id)),
        },
        subscribers,
        callbacks,
      ),
    );
    ctx.log(`per-task: ${subscribers} per-key subscribers on the anchor`);
    const anchor = await perTask(
      {
        url: `${ctx.anchor.url}/graphql`,
        authorization: null,
        operation: (i) => ({ query: TICK, variables: { key: `task-${i}` } }),
        trigger: (i) => publishTick(ctx, `task-${i}`, 1),
        matches: (payload) => tickOf(payload)?.seq === 1,
      },
      subscribers,
      callbacks,
    );
    return {
      figures: latencyFigures(
        'pertask',
        `webhook → its task's subscriber (${subscribers.toLocaleString('en-US')} live)`,
        gateway.latencyMs,
        'bare yoga publish → same',
        anchor.latencyMs,
        { note: (which) => (which === 'p50' ? `${callbacks} callbacks, one at a time` : undefined) },
      ),
      details: { gateway, anchor },
    };
  },
};

// --- HTTP: throughput -------------------------------------------------------------------------

const throughput: Scenario = {
  id: 'throughput',
  title: 'query throughput',
  async run(ctx) {
    const { connections, warmupSeconds, seconds } = ctx.plan.throughput;
    const common = { connections, warmupSeconds, seconds };
    ctx.log(`throughput: { hello } on the anchor, ${connections} connections × ${seconds} s`);
    const helloWorld = await measureHttp({
      ...common,
      url: `${ctx.anchor.url}/graphql`,
      body: graphqlBody('{ hello }'),
      expect: okGraphql('"hello":"world"'),
    });
    const small = ctx.seed.small;
    const taskLoad: HttpLoad = {
      ...common,
      url: `${ctx.gateway.url}/graphql`,
      headers: bearer(small.apiKey),
      body: graphqlBody(TASK_QUERY, { id: toGlobalId('OmniTask', small.taskId) }),
      expect: okGraphql('"omniTask":{"id"'),
    };
    ctx.log('throughput: omniTask(id) on the gateway');
    const task = await ctx.window('throughput.omniTask', () => measureHttp(taskLoad));
    ctx.log('throughput: omniTasks(first: 20) on the gateway');
    const list = await ctx.window('throughput.omniTasks', () =>
      measureHttp({ ...taskLoad, body: graphqlBody(LIST_QUERY, { first: 20 }), expect: okGraphql('"edges":[{') }),
    );
    // The database floors: bare yoga answering the same rows with one prepared SELECT (PostgreSQL only).
    let taskFloor: LoadResult | null = null;
    let listFloor: LoadResult | null = null;
    if (ctx.dbAnchor !== null) {
      const floorLoad = { ...common, url: `${ctx.dbAnchor.url}/graphql` };
      ctx.log('throughput: task(id) and tasks(first: 20) on the database anchor');
      taskFloor = await measureHttp({
        ...floorLoad,
        body: graphqlBody(ANCHOR_TASK_QUERY, { id: small.taskId }),
        expect: okGraphql('"task":{"id"'),
      });
      listFloor = await measureHttp({
        ...floorLoad,
        body: graphqlBody(ANCHOR_LIST_QUERY, { tenantId: small.id, first: 20 }),
        expect: okGraphql('"tasks":[{'),
      });
    }
    const row = (id: string, name: string, result: LoadResult, anchor: LoadResult | null, anchorName: string) => {
      const error = anchor === null ? problemOf(result) : problemOf(result, anchor);
      return figure({
        id,
        figure: name,
        metric: 'req/s',
        value: result.requestsPerSecond,
        anchor: anchorName,
        anchorValue: anchor?.requestsPerSecond ?? null,
        note:
          anchor === null
            ? 'PostgreSQL only'
            : `p50 ${result.latencyMs.p50.toFixed(1)} ms vs ${anchor.latencyMs.p50.toFixed(2)} ms at ${connections} connections`,
        ...(error === undefined ? {} : { error }),
      });
    };
    const hello = 'yoga hello-world { hello }';
    return {
      figures: [
        row('throughput.omniTask', 'omniTask(id) throughput', task, helloWorld, hello),
        row('throughput.omniTask.floor', 'omniTask(id) throughput', task, taskFloor, 'bare yoga + one prepared SELECT'),
        row('throughput.omniTasks', 'omniTasks(first: 20) throughput', list, helloWorld, hello),
        row(
          'throughput.omniTasks.floor',
          'omniTasks(first: 20) throughput',
          list,
          listFloor,
          'bare yoga + one prepared 20-row keyset SELECT',
        ),
      ],
      details: {
        hello: describeLatency(helloWorld),
        omniTask: describeLatency(task),
        omniTasks: describeLatency(list),
        taskFloor: taskFloor === null ? null : describeLatency(taskFloor),
        listFloor: listFloor === null ? null : describeLatency(listFloor),
      },
    };
  },
};

// --- HTTP: latency ----------------------------------------------------------------------------

function latencyLoad(
  ctx: BenchContext,
  url: string,
  headers: Record<string, string>,
  body: string | (() => string),
  expect: (body: string) => boolean,
): HttpLoad {
  return { ...ctx.plan.latency, url, headers, body, expect };
}

async function checkedGraphql<T>(ctx: BenchContext, apiKey: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(`${ctx.gateway.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(apiKey) },
    body: graphqlBody(query, variables),
  });
  const body = (await response.json()) as { data?: T; errors?: unknown[] };
  if (response.status !== 200 || body.errors !== undefined || body.data === undefined) {
    throw new Error(`${query.split('\n')[0]} answered ${response.status}: ${JSON.stringify(body).slice(0, 500)}`);
  }
  return body.data;
}

const paging: Scenario = {
  id: 'paging',
  title: 'omniTasks(first: 50) latency, few vs many rows',
  async run(ctx) {
    const { small, large } = ctx.seed;
    const url = `${ctx.gateway.url}/graphql`;
    const expectPage = okGraphql('"hasNextPage":true');
    const page = (key: string, after: string | null) =>
      latencyLoad(ctx, url, bearer(key), graphqlBody(LIST_QUERY, { first: 50, after }), expectPage);
    type Page = { omniTasks: { edges: unknown[]; pageInfo: { hasNextPage: boolean } } };
    for (const [key, after] of [
      [large.apiKey, null],
      [large.apiKey, large.middleCursor],
    ] as const) {
      const data = await checkedGraphql<Page>(ctx, key, LIST_QUERY, { first: 50, after });
      if (data.omniTasks.edges.length !== 50)
        throw new Error(`a page of the large tenant has ${data.omniTasks.edges.length} edges, not 50`);
    }
    const rows = (n: number) => `10^${Math.round(Math.log10(n))}`;
    ctx.log(`paging: first page at ${rows(small.rows)} and ${rows(large.rows)} rows, 1 connection`);
    const firstSmall = await ctx.window('paging.first.small', () => measureHttp(page(small.apiKey, null)));
    const firstLarge = await ctx.window('paging.first.large', () => measureHttp(page(large.apiKey, null)));
    ctx.log('paging: a page from the middle of each list');
    const deepSmall = await ctx.window('paging.middle.small', () => measureHttp(page(small.apiKey, small.middleCursor)));
    const deepLarge = await ctx.window('paging.middle.large', () => measureHttp(page(large.apiKey, large.middleCursor)));
    const firstError = problemOf(firstSmall, firstLarge);
    const deepError = problemOf(deepSmall, deepLarge);
    return {
      figures: [
        ...latencyFigures(
          'paging.first',
          `omniTasks(first: 50) at ${rows(large.rows)} rows`,
          firstLarge.latencyMs,
          `same at ${rows(small.rows)} rows`,
          firstSmall.latencyMs,
          {
            note: (which) => (which === 'p50' ? 'must stay near 1×' : undefined),
            ...(firstError === undefined ? {} : { error: firstError }),
          },
        ),
        ...latencyFigures(
          'paging.middle',
          `omniTasks(first: 50, after: middle) at ${rows(large.rows)}`,
          deepLarge.latencyMs,
          `same at ${rows(small.rows)} rows`,
          deepSmall.latencyMs,
          {
            note: (which) => (which === 'p50' ? 'keyset: a deep page costs a first page' : undefined),
            ...(deepError === undefined ? {} : { error: deepError }),
          },
        ),
      ],
      details: {
        firstSmall: describeLatency(firstSmall),
        firstLarge: describeLatency(firstLarge),
        middleSmall: describeLatency(deepSmall),
        middleLarge: describeLatency(deepLarge),
      },
    };
  },
};

/** The bar for the usage report on PostgreSQL: constant time, whatever the ledger holds. */
const USAGE_LIMIT_MS = 5;

const usage: Scenario = {
  id: 'usage',
  title: 'usage report latency',
  async run(ctx) {
    const { small, large } = ctx.seed;
    const url = `${ctx.gateway.url}/graphql`;
    type Usage = { viewer: { usage: { succeededTasks: number; failedTasks: number } } };
    const seen = (await checkedGraphql<Usage>(ctx, large.apiKey, USAGE_QUERY)).viewer.usage;
    if (seen.succeededTasks + seen.failedTasks !== large.usageEvents) {
      throw new Error(`the usage report counts ${seen.succeededTasks + seen.failedTasks} events, ${large.usageEvents} were seeded`);
    }
    const expectUsage = okGraphql('"succeededTasks"');
    ctx.log(`usage: viewer.usage over ${large.usageEvents} ledger rows vs an empty ledger, 1 connection`);
    const empty = await measureHttp(latencyLoad(ctx, url, bearer(small.apiKey), graphqlBody(USAGE_QUERY), expectUsage));
    const full = await ctx.window('usage.report', () =>
      measureHttp(latencyLoad(ctx, url, bearer(large.apiKey), graphqlBody(USAGE_QUERY), expectUsage)),
    );
    const error = problemOf(empty, full);
    const events = `10^${Math.round(Math.log10(large.usageEvents))}`;
    const verdict = (value: number) =>
      ctx.driver === 'postgres'
        ? `limit ${USAGE_LIMIT_MS} ms on PostgreSQL: ${value < USAGE_LIMIT_MS ? 'met' : 'MISSED'}`
        : `limit ${USAGE_LIMIT_MS} ms applies to PostgreSQL (this run: PGlite)`;
    return {
      figures: latencyFigures(
        'usage',
        `viewer.usage at ${events} usage events`,
        full.latencyMs,
        'same on an empty ledger',
        empty.latencyMs,
        {
          note: (which) => verdict(full.latencyMs[which]),
          ...(error === undefined ? {} : { error }),
        },
      ),
      details: { empty: describeLatency(empty), full: describeLatency(full), limitMs: USAGE_LIMIT_MS },
    };
  },
};

const create: Scenario = {
  id: 'create',
  title: 'createOmniVideo latency vs the simulator alone',
  async run(ctx) {
    const input = { prompt: PROMPT, mode: 'PRO', aspectRatio: 'RATIO_16_9', durationSeconds: 5 };
    // What the gateway itself sends upstream for this input: our id as external id, a callback URL.
    const upstreamBody = () => {
      const id = randomUUID();
      return JSON.stringify({
        model_name: 'kling-video-o1',
        prompt: PROMPT,
        mode: 'pro',
        external_task_id: id,
        aspect_ratio: '16:9',
        duration: '5',
        callback_url: `${ctx.gateway.url}/webhooks/kling/${id}/${webhookToken(ctx.webhookSecret, id)}`,
      });
    };
    ctx.log('create: POST /kling/v1/videos/omni-video on the simulator directly, 1 connection');
    const direct = await measureHttp(
      latencyLoad(ctx, `${ctx.simulatorUrl}/kling/v1/videos/omni-video`, { authorization: 'Bearer bench' }, upstreamBody, (body) =>
        body.includes('"code":0'),
      ),
    );
    ctx.log('create: createOmniVideo on the gateway, 1 connection');
    const viaGateway = await ctx.window('create.createOmniVideo', () =>
      measureHttp(
        latencyLoad(
          ctx,
          `${ctx.gateway.url}/graphql`,
          bearer(ctx.liveApiKey),
          graphqlBody(CREATE_MUTATION, { input }),
          okGraphql('"__typename":"CreateOmniVideoSuccess"'),
        ),
      ),
    );
    const error = problemOf(direct, viaGateway);
    return {
      figures: latencyFigures('create', 'createOmniVideo', viaGateway.latencyMs, 'simulator POST omni-video', direct.latencyMs, {
        note: (which) => `gateway adds ${(viaGateway.latencyMs[which] - direct.latencyMs[which]).toFixed(1)} ms`,
        ...(error === undefined ? {} : { error }),
      }),
      details: { simulator: describeLatency(direct), gateway: describeLatency(viaGateway) },
    };
  },
};

// --- callback ingestion -----------------------------------------------------------------------

/** Requests that each move their own task, `next` handing out the tasks in turn (warm-up first). */
function oneRequestPerTask(tasks: WatchableTask[], request: (task: WatchableTask) => { path: string; body: string }) {
  let index = 0;
  return () => {
    const task = tasks[index];
    if (task === undefined) throw new Error(`more requests than the ${tasks.length} seeded tasks`);
    index += 1;
    return request(task);
  };
}

const ingest: Scenario = {
  id: 'ingest',
  title: 'callback ingestion',
  async run(ctx) {
    const { connections, warmup, callbacks } = ctx.plan.ingest;
    const load = (url: string, next: () => { path: string; body: string }): HttpLoad => ({
      url,
      body: '',
      next,
      connections,
      warmupSeconds: 0,
      seconds: 0,
      expect: (body) => body.includes('"changed":true'),
    });
    ctx.log(`ingest: ${callbacks} processing callbacks to the gateway, each to its own task, ${connections} connections`);
    const gateway = await ctx.window('ingest.gateway', () =>
      measureRequests(
        load(
          ctx.gateway.url,
          oneRequestPerTask(ctx.seed.ingest.tasks, (task) => processingCallback(ctx, task)),
        ),
        warmup,
        callbacks,
      ),
    );
    let anchor: LoadResult | null = null;
    if (ctx.dbAnchor !== null) {
      ctx.log(`ingest: ${callbacks} requests to the bare node:http + postgres.js anchor, one UPDATE each`);
      const next = oneRequestPerTask(ctx.seed.ingestAnchor.tasks, (task) => ({
        ...processingCallback(ctx, task),
        path: `/callback/${task.id}`,
      }));
      anchor = await measureRequests(load(ctx.dbAnchor.url, next), warmup, callbacks);
    }
    const error = anchor === null ? problemOf(gateway) : problemOf(gateway, anchor);
    return {
      figures: [
        figure({
          id: 'ingest',
          figure: `callback ingestion (${connections} connections, distinct tasks)`,
          metric: 'req/s',
          value: gateway.requestsPerSecond,
          anchor: anchor === null ? 'bare node:http + postgres.js UPDATE (PostgreSQL only)' : 'bare node:http + postgres.js UPDATE',
          anchorValue: anchor?.requestsPerSecond ?? null,
          note: `p50 ${gateway.latencyMs.p50.toFixed(1)} ms, p99 ${gateway.latencyMs.p99.toFixed(1)} ms; ${callbacks} callbacks, each a change`,
          ...(error === undefined ? {} : { error }),
        }),
      ],
      details: { gateway: describeLatency(gateway), anchor: anchor === null ? null : describeLatency(anchor) },
    };
  },
};

// --- resume -----------------------------------------------------------------------------------

const RESUME = 'subscription Resume($after: String) { omniTaskUpdated(after: $after) { id status version changeCursor } }';

/** Opens a tenant-wide subscription resuming after `after`; resolves with the ms from subscribe to the `count`th event. */
function timeReplay(url: string, apiKey: string, after: string, count: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws', { perMessageDeflate: false });
    let started = 0;
    let received = 0;
    const timer = setTimeout(() => finish(new Error(`replay: ${received} of ${count} events within ${timeoutMs} ms`)), timeoutMs);
    const finish = (outcome: Error | number) => {
      clearTimeout(timer);
      socket.terminate();
      if (typeof outcome === 'number') resolve(outcome);
      else reject(outcome);
    };
    socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${apiKey}` } })));
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as { type: string; payload?: NextPayload };
      if (message.type === 'connection_ack') {
        started = performance.now();
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: RESUME, variables: { after } } }));
      } else if (message.type === 'next' && message.payload?.data?.omniTaskUpdated) {
        received += 1;
        if (received === count) finish(performance.now() - started);
      } else if (message.type === 'next' || message.type === 'error' || message.type === 'complete') {
        finish(new Error(`replay: unexpected ${message.type} ${JSON.stringify(message.payload).slice(0, 300)}`));
      }
    });
    socket.on('error', (error) => finish(error));
  });
}

const resume: Scenario = {
  id: 'resume',
  title: 'resume: replay of changes missed',
  async run(ctx) {
    const { changes } = ctx.plan.resume;
    const { tasks, apiKey } = ctx.seed.resume;
    const [first, ...rest] = tasks;
    if (first === undefined) throw new Error('no task seeded for the resume run');
    await postProcessing(ctx, first);
    const data = await checkedGraphql<{ omniTask: { changeCursor: string } }>(
      ctx,
      apiKey,
      'query($id: ID!) { omniTask(id: $id) { changeCursor } }',
      {
        id: toGlobalId('OmniTask', first.id),
      },
    );
    ctx.log(`resume: ${changes} tasks change while the subscriber is away`);
    const missed = rest.slice(0, changes);
    for (let i = 0; i < missed.length; i += 16) await Promise.all(missed.slice(i, i + 16).map((task) => postProcessing(ctx, task)));
    ctx.log(`resume: one subscriber resumes after the cursor and replays ${changes} changes`);
    const ms = await ctx.window('resume.replay', () =>
      timeReplay(`${ctx.gateway.url}/graphql`, apiKey, data.omniTask.changeCursor, changes, 60_000),
    );
    return {
      figures: [
        figure({
          id: 'resume',
          figure: `resume: replay of ${changes.toLocaleString('en-US')} changes to one subscriber`,
          metric: 'ms',
          value: ms,
          anchor: '',
          anchorValue: null,
          note: 'from subscribe to the last event, over graphql-ws',
        }),
      ],
      details: { changes, ms },
    };
  },
};

// --- two instances ------------------------------------------------------------------------------

const instances: Scenario = {
  id: 'instances',
  title: 'two instances on one database',
  async run(ctx) {
    const { connections, warmupSeconds, seconds } = ctx.plan.throughput;
    const small = ctx.seed.small;
    const load = (url: string, share: number): HttpLoad => ({
      connections: share,
      warmupSeconds,
      seconds,
      url: `${url}/graphql`,
      headers: bearer(small.apiKey),
      body: graphqlBody(TASK_QUERY, { id: toGlobalId('OmniTask', small.taskId) }),
      expect: okGraphql('"omniTask":{"id"'),
    });
    ctx.log(`instances: omniTask(id) on one gateway, ${connections} connections`);
    const one = await measureHttp(load(ctx.gateway.url, connections));
    const second = await ctx.startSecondGateway();
    if (second === null) {
      return {
        figures: [
          figure({
            id: 'instances',
            figure: 'omniTask(id) throughput, two instances',
            metric: 'req/s',
            value: null,
            anchor: 'one instance',
            anchorValue: one.requestsPerSecond,
            note: 'PostgreSQL only (PGlite is one process)',
          }),
        ],
        details: { one: describeLatency(one) },
      };
    }
    try {
      ctx.log(`instances: omniTask(id) on two gateways, ${connections / 2} connections each, at the same time`);
      const [a, b] = await Promise.all([load(ctx.gateway.url, connections / 2), load(second.url, connections / 2)].map(measureHttp));
      const both = (a?.requestsPerSecond ?? 0) + (b?.requestsPerSecond ?? 0);
      const error = problemOf(one, ...(a && b ? [a, b] : []));
      return {
        figures: [
          figure({
            id: 'instances',
            figure: 'omniTask(id) throughput, two instances',
            metric: 'req/s',
            value: both,
            anchor: 'one instance, same connections',
            anchorValue: one.requestsPerSecond,
            note: `${connections} connections split between them; goal ≥ 1.6× where the load generator is not the bottleneck`,
            ...(error === undefined ? {} : { error }),
          }),
        ],
        details: { one: describeLatency(one), first: a && describeLatency(a), second: b && describeLatency(b) },
      };
    } finally {
      await second.stop();
    }
  },
};

// --- outbound webhooks --------------------------------------------------------------------------

/** A loopback receiver that verifies every delivery (each endpoint its own path and secret) and reports its arrival. */
async function startBenchReceiver(secrets: string[]) {
  const arrivals = new Map<string, number>();
  const waiters = new Map<string, (at: number) => void>();
  let invalid = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const at = performance.now();
      const body = Buffer.concat(chunks).toString('utf8');
      res.writeHead(204).end();
      const endpoint = Number((req.url ?? '').split('/').at(-1));
      try {
        const event = new Webhook(secrets[endpoint] ?? '').verify(body, req.headers as Record<string, string>) as {
          data: { task: { id: string; status: string } | null };
        };
        if (event.data.task === null) return;
        const key = `${endpoint}/${event.data.task.id}/${event.data.task.status}`;
        arrivals.set(key, at);
        waiters.get(key)?.(at);
      } catch {
        invalid += 1;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: (endpoint: number) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/${endpoint}`,
    invalid: () => invalid,
    arrival(key: string, timeoutMs: number): Promise<number> {
      const seen = arrivals.get(key);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no webhook for ${key} within ${timeoutMs} ms`)), timeoutMs);
        waiters.set(key, (at) => {
          clearTimeout(timer);
          waiters.delete(key);
          resolve(at);
        });
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Endpoints of the tenant during the burst: each change makes one delivery to each. */
const WEBHOOK_ENDPOINTS = 10;

async function createBenchEndpoints(ctx: BenchContext, url: (endpoint: number) => string, secrets: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < WEBHOOK_ENDPOINTS; i += 1) {
    const created = await checkedGraphql<{ createWebhookEndpoint: { secret: string; endpoint: { id: string } } }>(
      ctx,
      ctx.seed.watch.apiKey,
      'mutation ($url: String!) { createWebhookEndpoint(input: { url: $url, events: [TASK_UPDATED] }) { secret endpoint { id } } }',
      { url: url(i) },
    );
    secrets[i] = created.createWebhookEndpoint.secret;
    ids.push(created.createWebhookEndpoint.endpoint.id);
  }
  return ids;
}

/** Changes `tasks` (16 callbacks at a time) and resolves once every endpoint received each; times from the first callback. */
async function webhookBurst(ctx: BenchContext, receiver: Awaited<ReturnType<typeof startBenchReceiver>>, tasks: WatchableTask[]) {
  const started = performance.now();
  const all = Promise.all(
    tasks.flatMap((task) =>
      Array.from({ length: WEBHOOK_ENDPOINTS }, (_, i) => receiver.arrival(`${i}/${toGlobalId('OmniTask', task.id)}/PROCESSING`, 120_000)),
    ),
  );
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < tasks.length) await postProcessing(ctx, tasks[next++]!);
    }),
  );
  const answeredAt = performance.now();
  const lastArrival = Math.max(...(await all));
  return {
    deliveriesPerSecond: (tasks.length * WEBHOOK_ENDPOINTS) / ((lastArrival - started) / 1000),
    changesPerSecond: tasks.length / ((answeredAt - started) / 1000),
  };
}

const webhooks: Scenario = {
  id: 'webhooks',
  title: 'outbound webhooks: deliveries/s and change → delivery latency',
  async run(ctx) {
    const { burst, sequential } = ctx.plan.webhooks;
    // Watch tasks past the per-task scenario's are untouched: each takes one change (→ PROCESSING).
    const tasks = ctx.seed.watch.tasks.slice(ctx.plan.delivery.subscribers);
    if (tasks.length < burst + sequential) throw new Error(`only ${tasks.length} spare tasks for ${burst + sequential} changes`);
    const secrets: string[] = [];
    const receiver = await startBenchReceiver(secrets);
    try {
      const endpointIds = await createBenchEndpoints(ctx, receiver.url, secrets);
      ctx.log(`webhooks: ${burst} task changes (16 callbacks at a time) to ${WEBHOOK_ENDPOINTS} endpoints, until every delivery arrived`);
      const rates = await ctx.window('webhooks.burst', () => webhookBurst(ctx, receiver, tasks.slice(0, burst)));

      // One endpoint left: the latency of one change to one delivery.
      for (const id of endpointIds.slice(1)) {
        await checkedGraphql(
          ctx,
          ctx.seed.watch.apiKey,
          'mutation ($id: ID!) { updateWebhookEndpoint(input: { id: $id, enabled: false }) { id } }',
          {
            id,
          },
        );
      }
      ctx.log(`webhooks: ${sequential} task changes one at a time, each until its delivery arrived`);
      const added: number[] = [];
      const callback: number[] = [];
      await ctx.window('webhooks.latency', async () => {
        for (const task of tasks.slice(burst, burst + sequential)) {
          const arrival = receiver.arrival(`0/${toGlobalId('OmniTask', task.id)}/PROCESSING`, 10_000);
          const t0 = performance.now();
          await postProcessing(ctx, task);
          const t1 = performance.now();
          added.push((await arrival) - t1);
          callback.push(t1 - t0);
        }
      });
      if (receiver.invalid() > 0) throw new Error(`${receiver.invalid()} deliveries failed verification`);
      const latency = percentiles(added);
      const anchor = percentiles(callback);
      return {
        figures: [
          figure({
            id: 'webhooks.throughput',
            figure: `webhook deliveries/s (${burst} changes × ${WEBHOOK_ENDPOINTS} endpoints)`,
            metric: 'deliveries/s',
            value: rates.deliveriesPerSecond,
            anchor: 'changes/s the callbacks made meanwhile',
            anchorValue: rates.changesPerSecond,
            note: 'every delivery verified by the receiver',
          }),
          ...latencyFigures('webhooks.latency', 'change committed → webhook received', latency, 'the callback making the change', anchor, {
            note: (which) => (which === 'p50' ? `${sequential} changes, one at a time, 1 endpoint` : undefined),
          }),
        ],
        details: { burst, sequential, endpoints: WEBHOOK_ENDPOINTS, ...rates, addedLatencyMs: latency, callbackMs: anchor },
      };
    } finally {
      await receiver.close();
    }
  },
};

// --- metrics ------------------------------------------------------------------------------------

/** The bar for a /metrics scrape: flat in the number of tasks. */
const METRICS_LIMIT_MS = 5;

const metrics: Scenario = {
  id: 'metrics',
  title: '/metrics scrape latency',
  async run(ctx) {
    const tasks = ctx.seed.small.rows + ctx.seed.large.rows;
    const get = (path: string, expect: (body: string) => boolean): HttpLoad => ({
      ...ctx.plan.latency,
      url: `${ctx.gateway.url}${path}`,
      method: 'GET',
      body: '',
      expect,
    });
    ctx.log(`metrics: GET /metrics over ${tasks.toLocaleString('en-US')} tasks vs GET /healthz, 1 connection`);
    const health = await measureHttp(get('/healthz', (body) => body.includes('"ok"')));
    const scrape = await ctx.window('metrics.scrape', () => measureHttp(get('/metrics', (body) => body.includes('omni_gateway_'))));
    const error = problemOf(health, scrape);
    const rows = `10^${Math.round(Math.log10(tasks))}`;
    return {
      figures: latencyFigures('metrics', `/metrics scrape at ${rows} tasks`, scrape.latencyMs, 'GET /healthz', health.latencyMs, {
        note: (which) => `limit ${METRICS_LIMIT_MS} ms: ${scrape.latencyMs[which] <= METRICS_LIMIT_MS ? 'met' : 'MISSED'}`,
        ...(error === undefined ? {} : { error }),
      }),
      details: { health: describeLatency(health), scrape: describeLatency(scrape) },
    };
  },
};

const dispatch: Scenario = {
  id: 'dispatch',
  title: 'dispatch latency from a freed upstream slot to the next create, 1,000 tasks of 10 tenants waiting',
  async run(ctx) {
    const samples = ctx.plan.mode === 'quick' ? 10 : 30;
    ctx.log('dispatch: a gateway of its own, budget 10, 10 tasks of one tenant waiting (anchor)');
    const anchor = await measureDispatch({ tenants: 1, perTenant: 10 + samples, samples });
    ctx.log('dispatch: the same with 1,000 tasks of 10 tenants waiting');
    const measured = await ctx.window('dispatch.freedSlot', () => measureDispatch({ tenants: 10, perTenant: 100, samples }));
    return {
      figures: [
        ...latencyFigures(
          'dispatch',
          'freed slot → upstream create, 1,000 waiting',
          measured.freedSlot,
          'same, ~10 waiting of one tenant',
          anchor.freedSlot,
          {
            note: () => `includes the final callback and its confirming upstream read (${samples} samples)`,
          },
        ),
        ...latencyFigures(
          'dispatch.positions',
          'page of 50 waiting tasks with queuePosition, 1,000 waiting',
          measured.pageWithPositions,
          'same page without queuePosition',
          measured.page,
          { note: () => `one tenant's 100 of 10 tenants' 1,000 waiting tasks (${samples} samples)` },
        ),
      ],
      details: { anchor, measured },
    };
  },
};

/** In the order they run: memory first, while the gateway's heap is still small and clean. */
export const SCENARIOS: Scenario[] = [
  memory,
  deliveryFanOut,
  deliveryPerTask,
  ingest,
  resume,
  throughput,
  instances,
  paging,
  usage,
  metrics,
  create,
  dispatch,
  webhooks,
];
