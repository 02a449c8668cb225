import { randomInt } from 'node:crypto';
import { callbackBody } from './bodies.ts';
import type { SimulatorFault } from './faults.ts';
import type { SimTask, TaskStatus } from './task.ts';

export type SimulatorStats = {
  createRequests: number;
  createsAccepted: number;
  byExternalTaskId: Record<string, { requests: number; accepted: number }>;
  /** Per external id, the place of its first acceptance among all creates accepted (1-based). */
  acceptedOrder: Record<string, number>;
  /** Tasks accepted and not yet final, all accounts; and the most there ever were at once. */
  inFlight: number;
  maxInFlight: number;
  /** Creates refused with 1303 because the account was at its concurrency limit. */
  concurrencyRefusals: number;
  getRequests: number;
  resultRequests: number;
  callbacksSent: number;
  callbacksFailed: number;
  callbacksDropped: number;
};

/** Everything a simulator holds; its tasks move on by timers and announce each step by callback. */
export type SimulatorState = {
  /** The live counters (the simulator hands out copies). */
  readonly stats: SimulatorStats;
  /** Queue of one-shot faults; push to inject. */
  readonly faults: SimulatorFault[];
  /** `concurrencyLimit`: tasks in flight per account beyond which a create is refused with 1303 (null: no limit). */
  readonly settings: { callbacks: boolean; concurrencyLimit: number | null };
  /** Tasks of this account accepted and not yet final. */
  inFlight(account: string): number;
  readonly closed: boolean;
  newTaskId(): string;
  /** The task with this task id, whoever created it. */
  task(id: string): SimTask | undefined;
  /** The task `account` knows as `id`: its task id, or the external id the account gave it. */
  find(account: string, id: string): SimTask | undefined;
  hasExternalId(account: string, externalTaskId: string): boolean;
  /** Registers a new task, announces it and schedules its progress. */
  start(task: SimTask): void;
  /** Ends a task now, as its timers would (callback included), or as `outcome` says; false if unknown or already final. */
  finish(id: string, outcome: FinishOutcome): boolean;
  /** Resolves after `ms`, unless a reset comes first (then never). */
  wait(ms: number): Promise<void>;
  reset(): void;
  /** Resets for good: no callback is sent any more. */
  close(): void;
};

/** How a test ends a task early: its own status, reason, videos and units, or those it would have had. */
export type FinishOutcome = {
  status?: 'succeed' | 'failed';
  statusMessage?: string;
  videos?: { id: string; url: string; duration: string }[];
  units?: number;
};

const CALLBACK_TIMEOUT_MS = 5000;

const isFinished = (task: SimTask) => task.status === 'succeed' || task.status === 'failed';

/** Gives a task the outcome a test asked for; the final status it then reaches. */
function applyOutcome(task: SimTask, outcome: FinishOutcome): 'succeed' | 'failed' {
  if (outcome.status === 'failed') task.failWith = outcome.statusMessage ?? task.failWith ?? 'Task failed';
  if (outcome.status === 'succeed') task.failWith = null;
  if (outcome.videos !== undefined) task.resultVideos = outcome.videos;
  if (outcome.units !== undefined) task.units = outcome.units;
  return task.failWith === null ? 'succeed' : 'failed';
}

function emptyStats(): SimulatorStats {
  return {
    createRequests: 0,
    createsAccepted: 0,
    byExternalTaskId: {},
    getRequests: 0,
    resultRequests: 0,
    callbacksSent: 0,
    callbacksFailed: 0,
    callbacksDropped: 0,
    acceptedOrder: {},
    inFlight: 0,
    maxInFlight: 0,
    concurrencyRefusals: 0,
  };
}

function randomTaskId(): string {
  // Kling task ids are long numeric strings; time plus randomness survives simulator restarts.
  return `${Date.now()}${String(randomInt(0, 1_000_000)).padStart(6, '0')}`;
}

// External ids are per account, as each API key is an account of its own.
const externalKey = (account: string, externalTaskId: string) => `${account}\n${externalTaskId}`;

/** Posts each task's callbacks; `live` reads the simulator's current counters and switches. */
function createCallbacks(live: { stats(): SimulatorStats; enabled(): boolean; closed(): boolean }) {
  const aborts = new Set<AbortController>();

  async function post(url: string, payload: string): Promise<void> {
    if (live.closed()) return;
    const abort = new AbortController();
    aborts.add(abort);
    // Counted before sending, so a receiver that got the body can already see it in the stats.
    live.stats().callbacksSent++;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: payload,
        signal: AbortSignal.any([abort.signal, AbortSignal.timeout(CALLBACK_TIMEOUT_MS)]),
      });
      await response.arrayBuffer();
      if (!response.ok) live.stats().callbacksFailed++;
    } catch {
      live.stats().callbacksFailed++;
    } finally {
      aborts.delete(abort);
    }
  }

  function notify(task: SimTask): void {
    if (task.callbackUrl === null) return;
    if (task.silent || !live.enabled()) {
      live.stats().callbacksDropped++;
      return;
    }
    const url = task.callbackUrl;
    const payload = JSON.stringify(callbackBody(task));
    // One at a time per task, so the receiver sees status changes in the order they happened.
    task.callbacks = task.callbacks.then(() => post(url, payload));
  }

  function abortAll(): void {
    for (const ac of aborts) ac.abort();
  }

  return { notify, abortAll };
}

function unusedTaskId(tasks: ReadonlyMap<string, SimTask>): string {
  let id = randomTaskId();
  while (tasks.has(id)) id = randomTaskId();
  return id;
}

/** Tasks accepted and not yet final, per account (the limit) and in all (the stats). */
function createInFlight(stats: () => SimulatorStats) {
  const active = new Map<string, number>();
  return {
    count: (account: string) => active.get(account) ?? 0,
    started(account: string): void {
      active.set(account, (active.get(account) ?? 0) + 1);
      const now = stats();
      now.inFlight += 1;
      now.maxInFlight = Math.max(now.maxInFlight, now.inFlight);
    },
    finished(account: string): void {
      active.set(account, (active.get(account) ?? 1) - 1);
      stats().inFlight -= 1;
    },
    clear: () => active.clear(),
  };
}

export function createSimulatorState(
  delays: { processingMs: number; finishMs: number },
  concurrencyLimit: number | null = null,
): SimulatorState {
  const tasks = new Map<string, SimTask>();
  const byExternalId = new Map<string, SimTask>();
  const timers = new Set<NodeJS.Timeout>();
  const faults: SimulatorFault[] = [];
  const settings: { callbacks: boolean; concurrencyLimit: number | null } = { callbacks: true, concurrencyLimit };
  let stats = emptyStats();
  let closed = false;
  const callbacks = createCallbacks({ stats: () => stats, enabled: () => settings.callbacks, closed: () => closed });
  const inFlight = createInFlight(() => stats);

  function schedule(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  }

  function reset(): void {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    callbacks.abortAll();
    tasks.clear();
    byExternalId.clear();
    faults.length = 0;
    inFlight.clear();
    settings.callbacks = true;
    settings.concurrencyLimit = concurrencyLimit;
    stats = emptyStats();
  }

  function advance(task: SimTask, status: TaskStatus): void {
    if (tasks.get(task.id) !== task || isFinished(task)) return; // reset since, or finished early
    task.status = status;
    task.updatedAt = Date.now();
    if (isFinished(task)) inFlight.finished(task.account);
    if (status === 'failed') task.statusMessage = task.failWith ?? 'Task failed';
    callbacks.notify(task);
  }

  function start(task: SimTask): void {
    tasks.set(task.id, task);
    inFlight.started(task.account);
    if (task.externalTaskId !== null) byExternalId.set(externalKey(task.account, task.externalTaskId), task);
    callbacks.notify(task);
    schedule(delays.processingMs, () => advance(task, 'processing'));
    schedule(Math.max(delays.finishMs, delays.processingMs), () => advance(task, task.failWith === null ? 'succeed' : 'failed'));
  }

  return {
    get stats() {
      return stats;
    },
    faults,
    settings,
    get closed() {
      return closed;
    },
    newTaskId: () => unusedTaskId(tasks),
    task: (id) => tasks.get(id),
    inFlight: inFlight.count,
    find(account, id) {
      const byId = tasks.get(id);
      return byId?.account === account ? byId : byExternalId.get(externalKey(account, id));
    },
    hasExternalId: (account, externalTaskId) => byExternalId.has(externalKey(account, externalTaskId)),
    start,
    finish(id, outcome) {
      const task = tasks.get(id);
      if (task === undefined || isFinished(task)) return false;
      advance(task, applyOutcome(task, outcome));
      return true;
    },
    wait: (ms) => new Promise((resolve) => schedule(ms, resolve)),
    reset,
    close() {
      closed = true;
      reset();
    },
  };
}
