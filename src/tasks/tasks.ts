import { createTaskCommands } from './commands.ts';
import type { TaskCommandDeps } from './commands.ts';
import { createTaskReads } from './reads.ts';

/** The task reads and commands as one service, the shape the GraphQL context and the webhook receiver use. */
export function createTaskService(deps: Omit<TaskCommandDeps, 'reads'>) {
  const reads = createTaskReads(deps.db);
  return { ...reads, ...createTaskCommands({ ...deps, reads }) };
}

export type TaskService = ReturnType<typeof createTaskService>;
