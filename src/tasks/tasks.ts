import type { TaskPriority } from '../db/schema.ts';
import type { CostEstimate } from '../metering/metering.ts';
import { budgetState, tasksAhead } from './budget.ts';
import { createTaskCommands } from './commands.ts';
import type { TaskCommandDeps } from './commands.ts';
import type { NormalizedOmniRequest } from './create-input.ts';
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
 * A task's place in the upstream queue (1 = next), null unless it waits for a slot. An estimate of
 * the fair dispatch order as shares stand now (budget.ts, tasksAhead).
 */
async function queuePosition(deps: TaskCommandDeps, task: TaskRow): Promise<number | null> {
  if (task.status !== 'PENDING' || task.queuedAt === null) return null;
  return 1 + (await tasksAhead(deps.db, task.tenantId, { priority: task.priority, queuedAt: task.queuedAt, id: task.id }));
}

/**
 * What a create of `request` would cost and when it would start: units and seconds at the price
 * table, the tenant's room, the tasks that would be dispatched before it, and an estimated start
 * (0 when a slot is free for it now; else the slots it waits for, in rounds of the budget, times
 * the recent run time). Nothing is stored and the upstream is not asked.
 */
async function estimate(
  deps: TaskCommandDeps & EstimateDeps,
  tenantId: string,
  request: NormalizedOmniRequest,
): Promise<OmniVideoEstimate> {
  const priority: TaskPriority = request.priority;
  const [cost, budget, ahead] = await Promise.all([
    deps.cost(tenantId, request),
    budgetState(deps.db, deps.maxInFlight),
    tasksAhead(deps.db, tenantId, { priority, queuedAt: null, id: null }),
  ]);
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
  return {
    ...reads,
    ...createTaskCommands(full),
    queuePosition: (task: TaskRow) => queuePosition(full, task),
    estimate: (tenantId: string, request: NormalizedOmniRequest) => estimate(full, tenantId, request),
    /** The upstream budget now: the limit in force, slots held, tasks waiting (metrics). */
    budget: () => budgetState(deps.db, deps.maxInFlight),
  };
}

export type TaskService = ReturnType<typeof createTaskService>;
