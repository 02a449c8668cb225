import { builder } from '../builder.ts';

export const OmniTaskStatus = builder.enumType('OmniTaskStatus', {
  values: ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const,
});
export const TaskPriority = builder.enumType('TaskPriority', {
  description: "Order among your own tasks waiting for an upstream slot (then age); other tenants' tasks go by their share.",
  values: ['HIGH', 'NORMAL', 'LOW'] as const,
});
export const OmniMode = builder.enumType('OmniMode', { values: ['STD', 'PRO'] as const });
export const AspectRatio = builder.enumType('AspectRatio', { values: ['RATIO_16_9', 'RATIO_9_16', 'RATIO_1_1'] as const });
export const FrameType = builder.enumType('FrameType', { values: ['FIRST_FRAME', 'END_FRAME'] as const });
export const ReferType = builder.enumType('ReferType', { values: ['FEATURE', 'BASE'] as const });
