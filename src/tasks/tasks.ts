import { createHash, randomUUID } from 'node:crypto';
import { and, asc, desc, eq, gte, inArray, lte, or, sql } from 'drizzle-orm';
import type { SQL } from 'drizzle-orm';
import type { Db, Tx } from '../db/database.ts';
import { uniqueViolation } from '../db/errors.ts';
import { keysetPast } from '../db/keyset.ts';
import { storable } from '../db/storable.ts';
import { omniTasks, taskEvents, taskSubmissions } from '../db/schema.ts';
import type { StoredRequest, TaskStatus } from '../db/schema.ts';
import { InvalidInputError, UpstreamError } from '../errors.ts';
import { KlingError } from '../kling/client.ts';
import type { KlingClient } from '../kling/client.ts';
import { toUpstreamBody } from '../kling/input.ts';
import type { NormalizedOmniRequest, UpstreamCreateBody } from '../kling/input.ts';
import type { Logger } from '../logger.ts';
import { nextCheckAfterAttempts, transitionFromUpstream } from './state.ts';
import type { TaskRow, TaskStateMachine, Transition } from './state.ts';

export type { TaskRow };

export type TaskListFilter = { status?: TaskStatus[] | null; createdAfter?: Date | null; createdBefore?: Date | null };
export type Keyset = { createdAt: Date; id: string };
/** `forward` walks newest → oldest (first/after); `backward` walks oldest → newest from `cursor` (last/before). */
export type TaskPageRequest = { direction: 'forward' | 'backward'; limit: number; cursor: Keyset | null; filter: TaskListFilter };

export type TaskServiceDeps = {
  db: Db;
  upstream: KlingClient;
  /** The callback URL the upstream is given for a task, or null to send none. */
  callbackUrl: (taskId: string) => string | null;
  taskDeadlineMinutes: number;
  /** When the reconciler first looks at a task whose create is still unanswered (this process may die). */
  pendingRecheckSeconds: number;
  logger: Logger;
  /** Runs inside the creating transaction, after the tenant's row lock: throws to refuse (quotas). */
  admit?: (tx: Tx, tenantId: string, request: NormalizedOmniRequest) => Promise<void>;
  state: TaskStateMachine;
};

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
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** `forward` pages walk newest → oldest, `backward` pages oldest → newest. */
function keysetCondition(direction: 'forward' | 'backward', cursor: Keyset): SQL {
  return keysetPast([omniTasks.createdAt, omniTasks.id], [cursor.createdAt, cursor.id], direction === 'forward' ? 'desc' : 'asc');
}

function filterConditions(tenantId: string, filter: TaskListFilter): (SQL | undefined)[] {
  return [
    eq(omniTasks.tenantId, tenantId),
    filter.status && filter.status.length > 0 ? inArray(omniTasks.status, filter.status) : undefined,
    filter.createdAfter ? gte(omniTasks.createdAt, filter.createdAfter) : undefined,
    filter.createdBefore ? lte(omniTasks.createdAt, filter.createdBefore) : undefined,
  ];
}

export function createTaskService(deps: TaskServiceDeps) {
  const { db, upstream, logger } = deps;
  // The hottest read (every omniTask, node and subscription update): built once, not per call.
  const getTask = db
    .select()
    .from(omniTasks)
    .where(and(eq(omniTasks.id, sql.placeholder('id')), eq(omniTasks.tenantId, sql.placeholder('tenantId'))))
    .limit(1)
    .prepare('omni_task_by_id');

  async function findByIdempotencyKey(tenantId: string, key: string): Promise<TaskRow | null> {
    const [task] = await db
      .select()
      .from(omniTasks)
      .where(and(eq(omniTasks.tenantId, tenantId), eq(omniTasks.idempotencyKey, key)))
      .limit(1);
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

  async function apply(taskId: string, transition: Transition): Promise<{ task: TaskRow; changed: boolean } | null> {
    return db.transaction((tx) => deps.state.transition(tx, taskId, transition));
  }

  /** Puts a PENDING task back on the reconciler's list after a retryable or ambiguous failure. */
  async function scheduleRetry(taskId: string, error: KlingError): Promise<TaskRow | null> {
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

  return {
    /**
     * Stores the task as PENDING (with our id as its external task id), then submits it upstream.
     * A definite upstream refusal fails the task and throws UpstreamError; a retryable or ambiguous
     * failure leaves it PENDING for the reconciler, which looks it up by external id before retrying.
     */
    async create(tenantId: string, request: NormalizedOmniRequest): Promise<TaskRow> {
      const hash = requestHash(request);
      if (request.idempotencyKey !== null) {
        const existing = await findByIdempotencyKey(tenantId, request.idempotencyKey);
        if (existing !== null) return sameRequestOrRefuse(existing, hash);
      }

      const id = randomUUID();
      const body = toUpstreamBody(request, { externalTaskId: id, callbackUrl: deps.callbackUrl(id) });
      let task: TaskRow;
      try {
        task = await db.transaction(async (tx) => {
          if (deps.admit !== undefined) await deps.admit(tx, tenantId, request);
          const [inserted] = await tx
            .insert(omniTasks)
            .values({
              id,
              tenantId,
              status: 'PENDING',
              prompt: request.prompt,
              modelName: request.modelName,
              mode: request.mode,
              aspectRatio: request.aspectRatio,
              durationSeconds: request.durationSeconds,
              hasVideoInput: request.referenceVideos.length > 0,
              request: storedRequest(request),
              requestHash: hash,
              externalTaskId: request.externalTaskId,
              idempotencyKey: request.idempotencyKey,
              deadlineAt: sql`now() + make_interval(mins => ${deps.taskDeadlineMinutes})`,
              // Should this process die before the upstream answers, the reconciler picks the task up.
              nextCheckAt: sql`now() + make_interval(secs => ${deps.pendingRecheckSeconds})`,
            })
            .returning();
          if (inserted === undefined) throw new Error('insert into omni_tasks returned no row');
          await tx.insert(taskSubmissions).values({ taskId: id, body });
          await deps.state.recordCreation(tx, inserted);
          return inserted;
        });
      } catch (error) {
        const constraint = uniqueViolation(error);
        if (constraint === 'omni_tasks_tenant_idempotency_key_unique' && request.idempotencyKey !== null) {
          // Another request with this key won the race; answer with its task.
          const existing = await findByIdempotencyKey(tenantId, request.idempotencyKey);
          if (existing !== null) return sameRequestOrRefuse(existing, hash);
        }
        if (constraint === 'omni_tasks_tenant_external_task_id_unique') {
          throw new InvalidInputError('Another task of this tenant already has this externalTaskId.', [
            { path: ['input', 'externalTaskId'], message: 'already used by another task' },
          ]);
        }
        throw error;
      }
      return (await this.submit(task, body, 'create')) ?? task;
    },

    /** Sends a PENDING task's body upstream and records the answer. */
    async submit(task: TaskRow, body: UpstreamCreateBody, source: string): Promise<TaskRow | null> {
      let accepted;
      try {
        accepted = await upstream.createTask(body);
      } catch (error) {
        if (!(error instanceof KlingError)) throw error;
        if (!error.retryable && !error.ambiguous) {
          const refused = await apply(
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
        logger.warn({ taskId: task.id, code: error.code, ambiguous: error.ambiguous }, 'upstream create deferred');
        return scheduleRetry(task.id, error);
      }
      return (await apply(task.id, transitionFromUpstream(accepted, source)))?.task ?? null;
    },

    async get(tenantId: string, id: string): Promise<TaskRow | null> {
      const [task] = await getTask.execute({ id, tenantId });
      return task ?? null;
    },

    /** The query of one page (limit + 1 rows, to tell whether more follow); exposed so tests can EXPLAIN it. */
    pageQuery(tenantId: string, page: TaskPageRequest) {
      const order =
        page.direction === 'forward'
          ? [desc(omniTasks.createdAt), desc(omniTasks.id)]
          : [asc(omniTasks.createdAt), asc(omniTasks.id)];
      return db
        .select()
        .from(omniTasks)
        .where(and(...filterConditions(tenantId, page.filter), page.cursor ? keysetCondition(page.direction, page.cursor) : undefined))
        .orderBy(...order)
        .limit(page.limit + 1);
    },

    /** One page in the order asked for, plus whether more rows lie beyond it and before it. */
    async list(
      tenantId: string,
      page: TaskPageRequest,
    ): Promise<{ tasks: TaskRow[]; hasMore: boolean; hasBefore: boolean }> {
      const rows = await this.pageQuery(tenantId, page);
      let hasBefore = false;
      if (page.cursor !== null) {
        const opposite = page.direction === 'forward' ? 'backward' : 'forward';
        // The cursor row itself lies "before" too, unless it was filtered out: check the boundary inclusively.
        const boundary = or(
          keysetCondition(opposite, page.cursor),
          and(eq(omniTasks.createdAt, page.cursor.createdAt), eq(omniTasks.id, page.cursor.id)),
        );
        const [before] = await db
          .select({ id: omniTasks.id })
          .from(omniTasks)
          .where(and(...filterConditions(tenantId, page.filter), boundary))
          .limit(1);
        hasBefore = before !== undefined;
      }
      return { tasks: rows.slice(0, page.limit), hasMore: rows.length > page.limit, hasBefore };
    },

    /** Asks the upstream for the task's state now and applies the answer; null when the task is not the tenant's. */
    async refresh(tenantId: string, id: string): Promise<TaskRow | null> {
      const task = await this.get(tenantId, id);
      if (task === null) return null;
      let answer;
      try {
        answer = await upstream.getTask(
          task.upstreamTaskId !== null ? { taskId: task.upstreamTaskId } : { externalTaskId: task.id },
        );
      } catch (error) {
        if (error instanceof KlingError) throw new UpstreamError(error.message, error.code, error.retryable);
        throw error;
      }
      if (answer === null) return task;
      return (await apply(task.id, transitionFromUpstream(answer, 'refresh')))?.task ?? task;
    },

    apply,

    /** Any tenant's task by id: for the webhook receiver and the reconciler, never for a client. */
    async find(id: string): Promise<TaskRow | null> {
      const [task] = await db.select().from(omniTasks).where(eq(omniTasks.id, id)).limit(1);
      return task ?? null;
    },

    /** The stored upstream body of a task not yet accepted upstream. */
    async submission(taskId: string): Promise<UpstreamCreateBody | null> {
      const [row] = await db.select({ body: taskSubmissions.body }).from(taskSubmissions).where(eq(taskSubmissions.taskId, taskId));
      return (row?.body as UpstreamCreateBody | undefined) ?? null;
    },

    /** A tenant's tasks changed at or after `since`, oldest change first (resync after a feed outage). */
    async changedSince(tenantId: string, since: Date, limit = 1_000): Promise<TaskRow[]> {
      return db
        .select()
        .from(omniTasks)
        .where(and(eq(omniTasks.tenantId, tenantId), gte(omniTasks.updatedAt, since)))
        .orderBy(asc(omniTasks.updatedAt))
        .limit(limit);
    },

    /** Puts a task's next reconciler look `checkDelayMs(attempts)` away (no news this time). */
    async backOff(taskId: string): Promise<void> {
      await db.update(omniTasks).set({ nextCheckAt: nextCheckAfterAttempts }).where(eq(omniTasks.id, taskId));
    },
  };
}

export type TaskService = ReturnType<typeof createTaskService>;
