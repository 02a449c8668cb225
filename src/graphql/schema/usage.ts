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

export function usageOf(context: GraphQLContext, tenantId: string, args: { from?: Date | null; to?: Date | null }) {
  const { metering } = context.services;
  return metering.summary(tenantId, metering.usageRange(args));
}
