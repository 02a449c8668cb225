import { InvalidInputError } from '../../errors.ts';
import { currentMonth } from '../../metering/metering.ts';
import type { UsageSummary } from '../../metering/metering.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { OmniMode } from './enums.ts';

const ModeUsageRef = builder.objectRef<UsageSummary['byMode'][number]>('ModeUsage').implement({
  fields: (t) => ({
    mode: t.field({ type: OmniMode, resolve: (usage) => usage.mode }),
    tasks: t.exposeInt('tasks'),
    videoSeconds: t.exposeFloat('videoSeconds'),
    units: t.exposeFloat('units'),
  }),
});

export const UsageSummaryRef = builder.objectRef<UsageSummary>('UsageSummary').implement({
  description: 'Usage in [from, to): succeeded tasks count in byMode; failed tasks only in failedTasks.',
  fields: (t) => ({
    succeededTasks: t.exposeInt('succeededTasks'),
    failedTasks: t.exposeInt('failedTasks'),
    videoSeconds: t.exposeFloat('videoSeconds'),
    units: t.exposeFloat('units'),
    byMode: t.field({ type: [ModeUsageRef], resolve: (usage) => usage.byMode }),
  }),
});

/** [from, to), defaulting to the current calendar month in UTC. */
function usageRange(args: { from?: Date | null; to?: Date | null }): { from: Date; to: Date } {
  const month = currentMonth();
  const range = { from: args.from ?? month.from, to: args.to ?? (args.from ? new Date() : month.to) };
  if (range.from >= range.to) {
    throw new InvalidInputError('"from" must be before "to".', [{ path: ['from'], message: 'must be before "to"' }]);
  }
  return range;
}

export function usageOf(context: GraphQLContext, tenantId: string, args: { from?: Date | null; to?: Date | null }) {
  return context.services.metering.summary(tenantId, usageRange(args));
}
