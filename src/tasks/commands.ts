import { createHash, randomUUID } from 'node:crypto';
import { and, eq, isNotNull, isNull, lte, sql } from 'drizzle-orm';
import { pipeline } from '../db/database.ts';
import type { Db, Executor, Tx } from '../db/database.ts';
import { uniqueViolation } from '../db/errors.ts';
import { storable } from '../db/storable.ts';
import { omniTasks, taskEvents, taskSubmissions, tenants } from '../db/schema.ts';
import type { StoredRequest } from '../db/schema.ts';
import { CancelNotPossibleError, InvalidInputError, TaskNotFoundError, UpstreamError } from '../errors.ts';
import { KlingError } from '../kling/errors.ts';
import { isThrottle } from '../kling/client.ts';
import type { KlingClient } from '../kling/client.ts';
import { toUpstreamBody } from '../kling/body.ts';
import type { UpstreamCreateBody } from '../kling/body.ts';
import type { KlingTask } from '../kling/payload.ts';
import { positionNow } from '../pubsub/change-log.ts';
import type { NormalizedOmniRequest } from './create-input.ts';
import type { Logger } from '../logger.ts';
import { DEADLINE_SOURCE } from './late-success.ts';
import type { TaskReads } from './reads.ts';
import { claimDispatch, claimWrites, growLimit, insertAndPick, requeueThrottled } from './budget.ts';
import type { Claimed } from './budget.ts';
import { isFinal, nextCheckAfterAttempts, transitionFromUpstream } from './state.ts';
import type { TaskRow, TaskStateMachine, Transition, UpstreamClaims } from './state.ts';
import { createUpstreamReads } from './upstream-reads.ts';
import type { UpstreamReads } from './upstream-reads.ts';

export type TaskCommandDeps = {
  db: Db;
  upstream: KlingClient;
  state: TaskStateMachine;
  reads: Pick<TaskReads, 'byId'>;
  /** The callback URL the upstream is given for a task, or null to send none. */
  callbackUrl: (taskId: string) => string | null;
  taskDeadlineMinutes: number;
  /** When the reconciler first looks at a task whose create is still unanswered (this process may die). */
  pendingRecheckSeconds: number;
  logger: Logger;
  /** Runs inside the creating transaction, after the tenant's row lock, with the limits read under it: throws to refuse (quotas). */
  admit?: (tx: Tx, tenantId: string, request: NormalizedOmniRequest, limits: TenantLimits) => Promise<void>;
  /** The tenant's create rate, checked first on every create: throws RateLimitedError when over it. */
  admitCreate?: (tenantId: string, createsPerMinute: number | null) => void;
  /** UPSTREAM_MAX_IN_FLIGHT: tasks accepted-and-unfinished at the upstream at once, across instances. */
  maxInFlight: number;
  /** Told of each dispatched task's wait in the queue, and of each refusal for load (metrics). */
  onDispatched?: (waitedMs: number) => void;
  onThrottled?: (kind: 'concurrency' | 'rate') => void;
};

/** A tenant's quotas (null: none), as read under its row lock by each create. */
export type TenantLimits = { seconds: number | null; concurrent: number | null };

/** Who creates: the tenant and its own create rate (null: the configured default). */
export type Creator = { tenantId: string; createsPerMinute: number | null };

function storedRequest(request: NormalizedOmniRequest): StoredRequest {
  return {
    referenceImages: request.referenceImages.map((image) => ({
      index: image.index,
      url: image.url,
      sha256: image.sha256,
      byteSize: image.byteSize,
      type: image.type,
    })),
    elements: request.elements,
    referenceVideos: request.referenceVideos,
  };
}

/** A digest of everything that defines the task, so a reused idempotency key can be checked. */
function requestHash(request: NormalizedOmniRequest): string {
  const canonical = JSON.stringify([
    request.prompt,
    request.modelName,
    request.mode,
    request.aspectRatio,
    request.durationSeconds,
    storedRequest(request),
    request.externalTaskId,
    // Only when set, so that the hashes of requests made before these fields existed do not change.
    ...(request.priority === 'NORMAL' && request.cancelAfterSeconds === null ? [] : [request.priority, request.cancelAfterSeconds]),
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

const idempotencyLookup = (db: Executor, tenantId: string, key: string) =>
  db
    .select()
    .from(omniTasks)
    .where(and(eq(omniTasks.tenantId, tenantId), eq(omniTasks.idempotencyKey, key)))
    .limit(1);

async function findByIdempotencyKey(db: Executor, tenantId: string, key: string): Promise<TaskRow | null> {
  const [task] = await idempotencyLookup(db, tenantId, key);
  return task ?? null;
}

function sameRequestOrRefuse(existing: TaskRow, hash: string): TaskRow {
  if (existing.requestHash !== hash) {
    throw new InvalidInputError('This idempotencyKey was already used with a different request.', [
      { path: ['input', 'idempotencyKey'], message: 'already used with a different request' },
    ]);
  }
  return existing;
}

/** Puts a PENDING task back on the reconciler's list after a retryable or ambiguous failure. */
async function scheduleRetry(db: Db, taskId: string, error: KlingError): Promise<TaskRow | null> {
  return db.transaction(async (tx) => {
    const [task] = await tx
      .update(omniTasks)
      .set({
        nextCheckAt: nextCheckAfterAttempts,
        statusMessage: storable(`Waiting to reach the upstream: ${error.message}`),
      })
      .where(and(eq(omniTasks.id, taskId), eq(omniTasks.status, 'PENDING')))
      .returning();
    await tx.insert(taskEvents).values({
      taskId,
      kind: 'upstream',
      source: 'create',
      payload: storable({ error: error.code, message: error.message, ambiguous: error.ambiguous }),
    });
    return task ?? null;
  });
}

/**
 * Keeps a task whose create is in flight off every reconciler's list: its next_check_at is pushed
 * `pendingRecheckSeconds` ahead, again every third of that while `attempt` runs, so that no
 * second create is sent meanwhile by this instance or another. Should this process die, the lease
 * runs out within `pendingRecheckSeconds` and the reconciler takes over; renewals also stop once
 * the create has outlived the client's own bound on it (a call that never ends holds no task).
 * When the attempt ends, its outcome sets the next check (accepted, retry later, refused).
 */
async function underCreateLease<T>(deps: TaskCommandDeps, taskId: string, attempt: () => Promise<T>): Promise<T> {
  const seconds = deps.pendingRecheckSeconds;
  const until = Date.now() + deps.upstream.createTimeLimitMs;
  const renew = () =>
    deps.db
      .update(omniTasks)
      .set({ nextCheckAt: sql`now() + make_interval(secs => ${seconds})` })
      .where(and(eq(omniTasks.id, taskId), eq(omniTasks.status, 'PENDING')));
  const timer = setInterval(
    () => {
      if (Date.now() > until) clearInterval(timer);
      else renew().catch((error: unknown) => deps.logger.warn({ err: error, taskId }, 'could not renew a create lease'));
    },
    (seconds * 1000) / 3,
  );
  // The lease is already held: by the stored task's first next_check_at, or by the reconciler's lease.
  try {
    return await attempt();
  } finally {
    clearInterval(timer);
  }
}

/**
 * Stores the task as PENDING with its upstream body, in one transaction with the quota check. The
 * tenant's row lock orders the tenant's creates: a task already made with the same idempotency key
 * is found here and returned (`created: false`), before the quota is asked, instead of racing
 * another insert of the key. Its statements go in pipelines (database.ts), so that the transaction
 * takes five round trips: begin; the tenant's lock (with the key's lookup); the task, its body and
 * the budget's state; the claim and the change-log row; commit (and one more with quotas to check).
 */
async function insertPending(
  deps: TaskCommandDeps,
  tenantId: string,
  request: NormalizedOmniRequest,
  row: { id: string; hash: string; body: UpstreamCreateBody },
): Promise<{ task: TaskRow; created: boolean; claimed?: boolean; limitShrunk?: boolean }> {
  return deps.state.commit(deps.db, async (tx) => {
    // NO KEY UPDATE: it orders the tenant's creates, yet lets other transactions insert rows that
    // reference the tenant (a usage event, whose foreign-key check takes KEY SHARE) without waiting.
    const lock = tx
      .select({ seconds: tenants.monthlyVideoSecondsLimit, concurrent: tenants.maxConcurrentTasks })
      .from(tenants)
      .where(eq(tenants.id, tenantId))
      .for('no key update');
    const key = request.idempotencyKey;
    const [[limits], [existing]] = key === null ? [await lock, []] : await pipeline(lock, idempotencyLookup(tx, tenantId, key));
    if (existing !== undefined) return { task: existing, created: false };
    if (deps.admit !== undefined && limits !== undefined) await deps.admit(tx, tenantId, request, limits);
    const { written, own, limitShrunk } = await insertAndPick(tx, [insertTask(tx, deps, tenantId, request, row), insertBody(tx, row)], {
      taskId: row.id,
      maxInFlight: deps.maxInFlight,
    });
    const [inserted] = written[0] as TaskRow[];
    if (inserted === undefined) throw new Error('insert into omni_tasks returned no row');
    if (own === null) {
      await pipeline(...deps.state.creationWrites(tx, inserted));
      return { task: inserted, created: true, claimed: false, limitShrunk };
    }
    const [, [claimed]] = await pipeline(...claimWrites(tx, own, deps.pendingRecheckSeconds), ...deps.state.creationWrites(tx, inserted));
    return { task: claimed ?? inserted, created: true, claimed: claimed !== undefined, limitShrunk };
  });
}

function insertTask(tx: Tx, deps: TaskCommandDeps, tenantId: string, request: NormalizedOmniRequest, row: { id: string; hash: string }) {
  return tx
    .insert(omniTasks)
    .values({
      id: row.id,
      tenantId,
      status: 'PENDING',
      prompt: request.prompt,
      modelName: request.modelName,
      mode: request.mode,
      aspectRatio: request.aspectRatio,
      durationSeconds: request.durationSeconds,
      hasVideoInput: request.referenceVideos.length > 0,
      request: storedRequest(request),
      requestHash: row.hash,
      externalTaskId: request.externalTaskId,
      idempotencyKey: request.idempotencyKey,
      deadlineAt: sql`now() + make_interval(mins => ${deps.taskDeadlineMinutes})`,
      priority: request.priority,
      // Every task starts in the queue; a dispatch pass claims it when a slot is free for it.
      queuedAt: sql`now()`,
      cancelAt: request.cancelAfterSeconds === null ? null : sql`now() + make_interval(secs => ${request.cancelAfterSeconds})`,
      // While it waits, only its deadline brings the reconciler to it; the claim sets a create lease.
      nextCheckAt: sql`now() + make_interval(mins => ${deps.taskDeadlineMinutes})`,
      changeTxid: positionNow.txid,
      changeSeq: positionNow.seq,
    })
    .returning();
}

const insertBody = (tx: Tx, row: { id: string; body: UpstreamCreateBody }) =>
  tx.insert(taskSubmissions).values({ taskId: row.id, body: row.body });

/**
 * Stores the task as PENDING (with our id as its external task id), then submits it upstream.
 * A definite upstream refusal fails the task and throws UpstreamError; a retryable or ambiguous
 * failure leaves it PENDING for the reconciler, which looks it up by external id before retrying.
 */
async function create(deps: TaskCommandDeps, runner: Runner, creator: Creator, request: NormalizedOmniRequest): Promise<TaskRow> {
  const { tenantId } = creator;
  deps.admitCreate?.(tenantId, creator.createsPerMinute);
  const hash = requestHash(request);
  if (request.idempotencyKey !== null) {
    const existing = await findByIdempotencyKey(deps.db, tenantId, request.idempotencyKey);
    if (existing !== null) return sameRequestOrRefuse(existing, hash);
  }

  const id = randomUUID();
  const body = toUpstreamBody(request, { externalTaskId: id, callbackUrl: deps.callbackUrl(id) });
  let task: TaskRow;
  let claimed = false;
  let limitShrunk = true;
  try {
    const pending = await insertPending(deps, tenantId, request, { id, hash, body });
    if (!pending.created) return sameRequestOrRefuse(pending.task, hash);
    task = pending.task;
    claimed = pending.claimed === true;
    limitShrunk = pending.limitShrunk !== false;
  } catch (error) {
    const constraint = uniqueViolation(error);
    if (constraint === 'omni_tasks_tenant_idempotency_key_unique' && request.idempotencyKey !== null) {
      // Another request with this key won the race; answer with its task.
      const existing = await findByIdempotencyKey(deps.db, tenantId, request.idempotencyKey);
      if (existing !== null) return sameRequestOrRefuse(existing, hash);
    }
    if (constraint === 'omni_tasks_tenant_external_task_id_unique') {
      throw new InvalidInputError('Another task of this tenant already has this externalTaskId.', [
        { path: ['input', 'externalTaskId'], message: 'already used by another task' },
      ]);
    }
    throw error;
  }
  // Claimed in its own transaction: sent in this request. Otherwise it waits; a pass now sends
  // whatever the budget allows (other tenants' turn came first), and it may yet be this task.
  if (claimed) return (await submit(deps, task, body, 'create', limitShrunk)) ?? task;
  const mine = await dispatchPass(deps, runner, task.id);
  if (mine === null || !(await holdClaim(deps, mine))) return (await deps.reads.byId(tenantId, task.id)) ?? task;
  return (await submit(deps, mine, body, 'create')) ?? mine;
}

/**
 * Renews a claimed task's create lease right before its create is sent, if the lease is still the
 * claim's own: a send delayed past the lease (a busy process) finds the reconciler has taken the
 * task over (it leased it, with a lease of its own) and leaves the create to it, so that one create
 * is in flight at a time.
 */
async function holdClaim(deps: TaskCommandDeps, claimed: TaskRow): Promise<boolean> {
  if (claimed.nextCheckAt === null) return false;
  const held = await deps.db
    .update(omniTasks)
    .set({ nextCheckAt: sql`now() + make_interval(secs => ${deps.pendingRecheckSeconds})` })
    .where(
      and(
        eq(omniTasks.id, claimed.id),
        eq(omniTasks.status, 'PENDING'),
        isNull(omniTasks.queuedAt),
        eq(omniTasks.nextCheckAt, claimed.nextCheckAt),
      ),
    )
    .returning({ id: omniTasks.id });
  return held.length > 0;
}

/** Applies a transition in a transaction of its own. */
function applyTransition(
  deps: TaskCommandDeps,
  taskId: string,
  transition: Transition,
): Promise<{ task: TaskRow; changed: boolean } | null> {
  return deps.state.commit(deps.db, (tx) => deps.state.transition(tx, taskId, transition));
}

/**
 * Sends a PENDING task's body upstream and records the answer. `limitShrunk` false: the budget's
 * adaptive limit was at its maximum when the task was claimed, so an acceptance has none to grow.
 */
async function submit(
  deps: TaskCommandDeps,
  task: TaskRow,
  body: UpstreamCreateBody,
  source: string,
  limitShrunk = true,
): Promise<TaskRow | null> {
  let accepted;
  try {
    accepted = await underCreateLease(deps, task.id, () => deps.upstream.createTask(body, { retryThrottled: false }));
  } catch (error) {
    if (isThrottle(error) && !error.ambiguous) return throttled(deps, task, error);
    if (!(error instanceof KlingError)) throw error;
    if (!error.retryable && !error.ambiguous) {
      const refused = await applyTransition(
        deps,
        task.id,
        storable({
          status: 'FAILED' as const,
          statusMessage: `The upstream refused the task (${error.code}): ${error.message}`,
          source,
          payload: { error: error.code, message: error.message, upstreamCode: error.upstreamCode },
          // A callback may already have shown the task running upstream: then the refusal was
          // of a duplicate attempt, not of the task.
          onlyFrom: ['PENDING'],
        }),
      );
      if (refused?.changed) throw new UpstreamError(error.message, error.code, false);
      return refused?.task ?? null;
    }
    deps.logger.warn({ taskId: task.id, code: error.code, ambiguous: error.ambiguous }, 'upstream create deferred');
    return scheduleRetry(deps.db, task.id, error);
  }
  // The limit grows (when shrunk) beside the acceptance, on another connection, not before it.
  if (!limitShrunk) return recordAcceptance(deps, task, accepted, source);
  const [, recorded] = await Promise.all([
    growLimit(deps.db, deps.maxInFlight).catch((error: unknown) => deps.logger.warn({ err: error }, 'could not grow the upstream limit')),
    recordAcceptance(deps, task, accepted, source),
  ]);
  return recorded;
}

/**
 * Records the upstream's acceptance of a create. The usual answer (submitted or processing) is
 * one statement, the same as a callback's (`advance`): status, upstream id, audit and status
 * events, change-log row and the submitted body's deletion; the task is then read back for the
 * answer. A final answer (an upstream that finished at once), or a task `advance` did not move,
 * goes through `transition` (with the final-state hooks).
 */
async function recordAcceptance(deps: TaskCommandDeps, task: TaskRow, accepted: KlingTask, source: string): Promise<TaskRow | null> {
  const transition = transitionFromUpstream(accepted, source);
  if (!isFinal(transition.status)) {
    const advanced = await deps.state.advanceAndRead(deps.db, task.id, transition, {
      upstreamTaskId: accepted.taskId,
      externalTaskId: task.id,
    });
    if (advanced.outcome === 'changed') return advanced.task ?? deps.reads.byId(task.tenantId, task.id);
    // Not moved: a callback came first (then the transition below changes nothing), or another
    // attempt at the task was refused for load and put it back in its queue meanwhile, where
    // `advance` leaves a task. This acceptance stands: the transition takes it out of the queue.
  }
  return (await applyTransition(deps, task.id, transition))?.task ?? null;
}

/** A refusal for load: the task goes back to the head of its queue, the budget shrinks (budget.ts). */
async function throttled(deps: TaskCommandDeps, task: TaskRow, error: KlingError): Promise<TaskRow | null> {
  deps.onThrottled?.(error.code === 'UPSTREAM_CONCURRENCY_LIMIT' ? 'concurrency' : 'rate');
  deps.logger.info({ taskId: task.id, code: error.code }, 'upstream at capacity: task back in its queue');
  return requeueThrottled(deps.db, task, {
    code: error.code,
    message: error.message,
    retryAfterMs: error.retryAfterMs,
    maxInFlight: deps.maxInFlight,
  });
}

/** Creates of claimed tasks sent in the background; `drain` waits for them (shutdown). */
type Runner = { run(claimed: Claimed): void; drain(): Promise<void> };

function createRunner(deps: TaskCommandDeps, send: (claimed: Claimed) => Promise<unknown>): Runner {
  const running = new Set<Promise<unknown>>();
  return {
    run(claimed) {
      const sent = send(claimed)
        .catch((error: unknown) => deps.logger.warn({ err: error, taskId: claimed.task.id }, 'dispatch of a claimed task failed'))
        .finally(() => running.delete(sent));
      running.add(sent);
    },
    async drain() {
      while (running.size > 0) await Promise.all([...running]);
    },
  };
}

/** Sends a claimed task's stored body; without one (it was lost), the task fails. */
async function sendClaimed(deps: TaskCommandDeps, claimed: Claimed): Promise<TaskRow | null> {
  if (!(await holdClaim(deps, claimed.task))) return null;
  const [row] = await deps.db
    .select({ body: taskSubmissions.body })
    .from(taskSubmissions)
    .where(eq(taskSubmissions.taskId, claimed.task.id));
  if (row === undefined) {
    // Gone because the task moved on meanwhile (a callback from an earlier attempt that the
    // upstream did accept clears it): then it runs upstream and stays as it is. Only a task still
    // PENDING without its body has truly lost it.
    const failed = await applyTransition(deps, claimed.task.id, {
      status: 'FAILED',
      statusMessage: 'The task never reached the upstream and its request is no longer available.',
      source: 'dispatch',
      onlyFrom: ['PENDING'],
    });
    return failed?.task ?? null;
  }
  try {
    return await submit(deps, claimed.task, row.body as UpstreamCreateBody, 'dispatch');
  } catch (error) {
    if (error instanceof UpstreamError) return null; // refused upstream: the task is FAILED with the reason
    throw error;
  }
}

/**
 * One dispatch pass (budget.ts): claimed tasks are sent in the background, except `mine`, which
 * the caller sends itself (a create sends its own task in the request). Returns `mine` if claimed.
 */
async function dispatchPass(deps: TaskCommandDeps, runner: Runner, mine: string | null = null): Promise<TaskRow | null> {
  const claimed = await claimDispatch(deps.db, { maxInFlight: deps.maxInFlight, leaseSeconds: deps.pendingRecheckSeconds });
  let own: TaskRow | null = null;
  for (const item of claimed) {
    deps.onDispatched?.(item.waitedMs);
    if (item.task.id === mine) own = item.task;
    else runner.run(item);
  }
  return own;
}

/** A pass of the dispatcher's own (a slot freed, a tick): every claimed task goes to the runner. */
async function dispatchAll(deps: TaskCommandDeps, runner: Runner): Promise<void> {
  await dispatchPass(deps, runner);
}

/**
 * Cancels a task still waiting for an upstream slot: CANCELLED, at no charge (no usage event, no
 * upstream call). A task already sent (or final) cannot be: the upstream has no cancel. Another
 * tenant's task is not found, like an unknown id.
 */
async function cancel(deps: TaskCommandDeps, tenantId: string, id: string, source = 'cancel'): Promise<TaskRow> {
  return deps.state.commit(deps.db, async (tx) => {
    const [task] = await tx
      .select()
      .from(omniTasks)
      .where(and(eq(omniTasks.id, id), eq(omniTasks.tenantId, tenantId)))
      .for('update');
    if (task === undefined) throw new TaskNotFoundError('No task has this id.');
    if (task.status === 'CANCELLED') return task;
    if (task.status !== 'PENDING' || task.queuedAt === null) {
      throw new CancelNotPossibleError(
        task.status === 'PENDING' || task.status === 'SUBMITTED' || task.status === 'PROCESSING'
          ? 'The task has already been sent to the upstream, which offers no cancel; it will run and be charged.'
          : `The task is already final (${task.status}).`,
      );
    }
    const statusMessage =
      source === 'cancel-after'
        ? 'Cancelled: still waiting for an upstream slot at its cancelAfterSeconds.'
        : 'Cancelled before it was sent upstream.';
    const result = await deps.state.transition(tx, id, { status: 'CANCELLED', statusMessage, source, onlyFrom: ['PENDING'] });
    return result?.task ?? task;
  });
}

/** Cancels waiting tasks whose cancelAfterSeconds has passed (a few per call, oldest first); returns how many. */
async function cancelExpired(deps: TaskCommandDeps, limit: number): Promise<number> {
  const due = await deps.db
    .select({ id: omniTasks.id, tenantId: omniTasks.tenantId })
    .from(omniTasks)
    .where(and(isNotNull(omniTasks.queuedAt), lte(omniTasks.cancelAt, sql`now()`)))
    .orderBy(omniTasks.cancelAt)
    .limit(limit);
  let cancelled = 0;
  for (const task of due) {
    try {
      await cancel(deps, task.tenantId, task.id, 'cancel-after');
      cancelled += 1;
    } catch (error) {
      // Claimed for dispatch meanwhile: it is on its way upstream and runs.
      if (!(error instanceof CancelNotPossibleError || error instanceof TaskNotFoundError)) throw error;
    }
  }
  return cancelled;
}

/** Asks the upstream for the task's state now (rationed) and applies the answer; null when the task is not the tenant's. */
async function refresh(deps: TaskCommandDeps, reads: UpstreamReads, tenantId: string, id: string): Promise<TaskRow | null> {
  const task = await deps.reads.byId(tenantId, id);
  return task === null ? null : reads.refresh(task);
}

/**
 * Fails a task at its deadline and, in the same transaction, keeps it on the reconciler's list
 * (`recheckAfterSeconds`): the upstream may still finish, and bill, the task.
 */
async function failAtDeadline(deps: TaskCommandDeps, taskId: string, statusMessage: string, recheckAfterSeconds: number) {
  return deps.state.commit(deps.db, async (tx) => {
    const result = await deps.state.transition(tx, taskId, { status: 'FAILED', statusMessage, source: DEADLINE_SOURCE });
    if (result?.changed) {
      await tx
        .update(omniTasks)
        .set({ nextCheckAt: sql`now() + make_interval(secs => ${recheckAfterSeconds})` })
        .where(eq(omniTasks.id, taskId));
    }
    return result;
  });
}

/** Everything that changes tasks on behalf of clients, callbacks and the reconciler. */
export function createTaskCommands(deps: TaskCommandDeps) {
  const apply = (taskId: string, transition: Transition) => applyTransition(deps, taskId, transition);
  const reads = createUpstreamReads({ db: deps.db, upstream: deps.upstream, logger: deps.logger, apply });
  const runner = createRunner(deps, (claimed) => sendClaimed(deps, claimed));
  return {
    create: (creator: Creator, request: NormalizedOmniRequest) => create(deps, runner, creator, request),
    cancel: (tenantId: string, id: string) => cancel(deps, tenantId, id),
    cancelExpired: (limit: number) => cancelExpired(deps, limit),
    /** One dispatch pass: claims what the budget allows, fairly, and sends it in the background. */
    dispatch: () => dispatchAll(deps, runner),
    /** Waits for the creates that dispatch passes started (shutdown). */
    drainDispatches: () => runner.drain(),
    submit: (task: TaskRow, body: UpstreamCreateBody, source: string) => submit(deps, task, body, source),
    refresh: (tenantId: string, id: string) => refresh(deps, reads, tenantId, id),
    apply,
    /** A non-final upstream status for a task whose body makes these claims, in one statement. */
    advance: (taskId: string, transition: Transition, claims: UpstreamClaims) => deps.state.advance(deps.db, taskId, transition, claims),
    confirmFinal: reads.confirmFinal,
    failAtDeadline: (taskId: string, statusMessage: string, recheckAfterSeconds: number) =>
      failAtDeadline(deps, taskId, statusMessage, recheckAfterSeconds),
  };
}

export type TaskCommands = ReturnType<typeof createTaskCommands>;
