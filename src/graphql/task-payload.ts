import { execute, GraphQLObjectType, GraphQLSchema, parse } from 'graphql';
import type { Logger } from '../logger.ts';
import type { TaskRow } from '../tasks/state.ts';
import type { Services } from './context.ts';

/** Every field of OmniTask, as `omniTask(id:)` would return them all. */
const TASK_SELECTION = parse(`{
  id status statusMessage version changeCursor prompt modelName mode aspectRatio durationSeconds
  referenceImages { index url type sha256 byteSize }
  elements { index elementId }
  referenceVideos { index url referType keepOriginalSound }
  videos { id url durationSeconds upstreamUrl archived sizeBytes sha256 }
  externalTaskId upstreamTaskId createdAt updatedAt submittedAt completedAt
}`);

/**
 * The task in a webhook's body, made by the API's own OmniTask type and resolvers: the schema's
 * OmniTask is made the root of a schema of its own and the selection above is run on a task
 * snapshot, so the body is exactly what `omniTask(id:)` returns for that version (global ids,
 * scalars as serialised, video URLs as the API gives them).
 */
export function createTaskSerializer(deps: { schema: GraphQLSchema; services: Services; logger: Logger }) {
  const taskType = deps.schema.getType('OmniTask');
  if (!(taskType instanceof GraphQLObjectType)) throw new Error('the schema has no OmniTask type');
  const taskSchema = new GraphQLSchema({ query: taskType });
  return async (task: TaskRow): Promise<Record<string, unknown>> => {
    const viewer = {
      kind: 'tenant' as const,
      tenantId: task.tenantId,
      apiKeyId: '',
      rates: { requestsPerSecond: null, createsPerMinute: null },
    };
    const result = await execute({
      schema: taskSchema,
      document: TASK_SELECTION,
      rootValue: task,
      contextValue: { viewer, services: deps.services, logger: deps.logger, signal: null },
    });
    if (result.errors !== undefined || result.data == null) {
      throw new Error(`task ${task.id} could not be serialised: ${result.errors?.map((error) => error.message).join('; ')}`);
    }
    return result.data as Record<string, unknown>;
  };
}
