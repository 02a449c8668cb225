import type { TaskPriority } from '../db/schema.ts';
import type { CostEstimate } from '../metering/metering.ts';
import { budgetState } from './budget.ts';
import { createTaskCommands } from './commands.ts';
import type { TaskCommandDeps } from './commands.ts';
import type { NormalizedOmniRequest } from './create-input.ts';
import { NEW_TASK, queuePlaces } from './queue-order.ts';
import type { QueuePlaces } from './queue-order.ts';
import { createTaskReads } from './reads.ts';
import type { TaskRow } from './state.ts';

export type OmniVideoEstimate = CostEstimate & { queueAhead: number; estimatedStartSeconds: number | null };

type EstimateDeps = {
  /** The cost and the tenant's room (metering). */
  cost: (tenantId: string, request: NormalizedOmniRequest) => Promise<CostEstimate>;
  /** How long tasks run upstream lately, in seconds; null when unknown. */
  meanRunSeconds: () => number | null;
};

/**
 * Queue positions (1 = next), batched: the positions asked for in one turn of the event loop (the
 * tasks of one page, say) for one tenant come from one replay of the dispatch order
 * (queue-order.ts). Null unless the task waits for a slot.
 */
function createQueuePositions(deps: TaskCommandDeps) {
  const batches = new Map<string, { ids: Set<string>; result: Promise<Map<string, number>> }>();
  return (task: TaskRow): Promise<number | null> => {
    if (task.status !== 'PENDING' || task.queuedAt === null) return Promise.resolve(null);
    let batch = batches.get(task.tenantId);
    if (batch === undefined) {
      const ids = new Set<string>();
      const result = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        batches.delete(task.tenantId);
        return (await queuePlaces(deps.db, deps.maxInFlight, { tenantId: task.tenantId, ids: [...ids] })).places;
      });
      batch = { ids, result };
      batches.set(task.tenantId, batch);
    }
    batch.ids.add(task.id);
    return batch.result.then((places) => {
      const place = places.get(task.id);
      return place === undefined ? null : place + 1;
    });
  };
}

/**
 * Where a new task of `priority` would stand (its place, with the limit and slots held it was
 * replayed under), shared by the estimates asked in one turn of the event loop for one tenant and
 * priority (aliases of estimateOmniVideo in one request replay the queue once).
 */
function createNewTaskPlaces(deps: TaskCommandDeps) {
  const turn = new Map<string, Promise<QueuePlaces>>();
  return (tenantId: string, priority: TaskPriority) => {
    const key = `${tenantId}/${priority}`;
    let place = turn.get(key);
    if (place === undefined) {
      place = queuePlaces(deps.db, deps.maxInFlight, { tenantId, ids: [], priority });
      turn.set(key, place);
      setImmediate(() => turn.delete(key));
    }
    return place;
  };
}

/**
 * What a create of `request` would cost and when it would start: units and seconds at the price
 * table, the tenant's room, the tasks that would be dispatched before it, and an estimated start
 * (0 when a slot is free for it now; else the slots it waits for, in rounds of the budget, times
 * the recent run time). Nothing is stored and the upstream is not asked.
 */
async function estimate(
  deps: TaskCommandDeps & EstimateDeps & { newTaskPlace: ReturnType<typeof createNewTaskPlaces> },
  tenantId: string,
  request: NormalizedOmniRequest,
): Promise<OmniVideoEstimate> {
  const priority: TaskPriority = request.priority;
  const [cost, budget] = await Promise.all([deps.cost(tenantId, request), deps.newTaskPlace(tenantId, priority)]);
  const ahead = budget.places.get(NEW_TASK) ?? 0;
  const free = Math.max(0, budget.limit - budget.inFlight);
  const waitsFor = ahead + 1 - free;
  const mean = deps.meanRunSeconds();
  const estimatedStartSeconds = waitsFor <= 0 ? 0 : mean === null ? null : Math.ceil(waitsFor / budget.limit) * mean;
  return { ...cost, queueAhead: ahead, estimatedStartSeconds };
}

/** The task reads and commands as one service, the shape the GraphQL context and the webhook receiver use. */
export function createTaskService(deps: Omit<TaskCommandDeps, 'reads'> & EstimateDeps) {
  const reads = createTaskReads(deps.db);
  const full = { ...deps, reads };
  const estimating = { ...full, newTaskPlace: createNewTaskPlaces(full) };
  return {
    ...reads,
    ...createTaskCommands(full),
    queuePosition: createQueuePositions(full),
    estimate: (tenantId: string, request: NormalizedOmniRequest) => estimate(estimating, tenantId, request),
    /** The upstream budget now: the limit in force, slots held, tasks waiting (metrics). */
    budget: () => budgetState(deps.db, deps.maxInFlight),
  };
}

export type TaskService = ReturnType<typeof createTaskService>;
