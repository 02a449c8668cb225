import { resolveCursorConnection } from '@pothos/plugin-relay';
import type { ResolveCursorConnectionArgs } from '@pothos/plugin-relay';
import { z } from 'zod';
import type { StoredVideo } from '../../db/schema.ts';
import {
  AppError,
  CancelNotPossibleError,
  InvalidInputError,
  NotFoundError,
  QuotaExceededError,
  RateLimitedError,
  TaskNotFoundError,
  UpstreamError,
} from '../../errors.ts';
import { fromGlobalId } from '../../ids.ts';
import { createOmniVideoInputSchema } from '../../tasks/create-input.ts';
import type { TaskRow } from '../../tasks/state.ts';
import { builder } from '../builder.ts';
import { decodeCursor, encodeCursor, pageSizes } from '../cursor.ts';
import type { OmniVideoEstimate } from '../../tasks/tasks.ts';
import { AspectRatio, FrameType, OmniMode, OmniTaskStatus, ReferType, TaskPriority } from './enums.ts';
import { ErrorInterface } from './errors.ts';
import { perCallCharge } from './per-call-charge.ts';

const ReferenceImageRef = builder.objectRef<TaskRow['request']['referenceImages'][number]>('ReferenceImage').implement({
  fields: (t) => ({
    index: t.exposeInt('index'),
    url: t.exposeString('url', { nullable: true, description: 'Null for an inline (base64) image.' }),
    type: t.field({ type: FrameType, nullable: true, resolve: (image) => image.type }),
    sha256: t.exposeString('sha256', { nullable: true, description: 'SHA-256 of an inline image, hex.' }),
    byteSize: t.exposeInt('byteSize', { nullable: true, description: 'Size of an inline image in bytes.' }),
  }),
});

const ElementRef = builder.objectRef<TaskRow['request']['elements'][number]>('Element').implement({
  fields: (t) => ({
    index: t.exposeInt('index'),
    elementId: t.exposeString('elementId'),
  }),
});

const ReferenceVideoRef = builder.objectRef<TaskRow['request']['referenceVideos'][number]>('ReferenceVideo').implement({
  fields: (t) => ({
    index: t.exposeInt('index'),
    url: t.exposeString('url'),
    referType: t.field({ type: ReferType, resolve: (video) => video.referType }),
    keepOriginalSound: t.exposeBoolean('keepOriginalSound'),
  }),
});

const OmniVideoRef = builder.objectRef<StoredVideo>('OmniVideo').implement({
  fields: (t) => ({
    id: t.exposeString('id'),
    url: t.string({
      description: "Where to fetch the video: a signed, expiring URL of the gateway's own copy once archived, the upstream URL until then.",
      resolve: (video, _args, context) => context.services.videoUrl(video),
    }),
    durationSeconds: t.exposeFloat('durationSeconds', { nullable: true }),
    upstreamUrl: t.exposeString('upstreamUrl', { description: 'The upstream URL; it expires after about 30 days.' }),
    archived: t.boolean({ resolve: (video) => Boolean(video.archive) }),
    sizeBytes: t.float({ nullable: true, description: 'Size of the archived copy.', resolve: (video) => video.archive?.sizeBytes ?? null }),
    sha256: t.string({
      nullable: true,
      description: 'SHA-256 of the archived copy, hex.',
      resolve: (video) => video.archive?.sha256 ?? null,
    }),
  }),
});

const OmniTaskRef = builder.objectRef<TaskRow>('OmniTask');

builder.node(OmniTaskRef, {
  id: { resolve: (task) => task.id },
  // Another tenant's task loads as null, exactly like an id that does not exist.
  loadOne: (id, context) => (context.viewer.kind === 'tenant' ? context.services.tasks.byId(context.viewer.tenantId, id) : null),
  fields: (t) => ({
    status: t.field({ type: OmniTaskStatus, resolve: (task) => task.status }),
    statusMessage: t.exposeString('statusMessage', { nullable: true }),
    version: t.exposeInt('version', { description: 'Grows by one with every change of the task.' }),
    changeCursor: t.string({
      description: 'The position of this state in your change log: pass it as `after` to omniTaskUpdated to resume from here.',
      resolve: (task, _args, context) => context.services.watch.cursorOf(task),
    }),
    prompt: t.exposeString('prompt'),
    modelName: t.exposeString('modelName'),
    mode: t.field({ type: OmniMode, resolve: (task) => task.mode }),
    aspectRatio: t.field({ type: AspectRatio, nullable: true, resolve: (task) => task.aspectRatio }),
    durationSeconds: t.exposeInt('durationSeconds', { nullable: true }),
    referenceImages: t.field({ type: [ReferenceImageRef], resolve: (task) => task.request.referenceImages }),
    elements: t.field({ type: [ElementRef], resolve: (task) => task.request.elements }),
    referenceVideos: t.field({ type: [ReferenceVideoRef], resolve: (task) => task.request.referenceVideos }),
    videos: t.field({ type: [OmniVideoRef], resolve: (task) => task.videos }),
    externalTaskId: t.exposeString('externalTaskId', { nullable: true }),
    upstreamTaskId: t.exposeString('upstreamTaskId', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    submittedAt: t.expose('submittedAt', { type: 'DateTime', nullable: true }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
    priority: t.field({ type: TaskPriority, resolve: (task) => task.priority }),
    queuePosition: t.int({
      nullable: true,
      description:
        'While the task waits for an upstream slot: its place in the dispatch order (1 = next), estimated from ' +
        "every tenant's share as it stands now. Null once sent upstream, final or cancelled.",
      resolve: (task, _args, context) => context.services.tasks.queuePosition(task),
    }),
    units: t.float({
      nullable: true,
      description: 'What the task cost at our price table, once final (0 for a failed or cancelled task); null until then.',
      resolve: (task) => task.units,
    }),
    upstreamUnits: t.float({
      nullable: true,
      description: "The upstream's own deduction (final_unit_deduction), once final and reported; null otherwise.",
      resolve: (task) => {
        const units = task.upstreamUnits === null ? Number.NaN : Number(task.upstreamUnits);
        return Number.isFinite(units) ? units : null;
      },
    }),
  }),
});

const ReferenceImageInput = builder.inputType('ReferenceImageInput', {
  description: 'Exactly one of url and base64 (a data: URL is accepted too).',
  fields: (t) => ({
    url: t.string(),
    base64: t.string(),
    type: t.field({ type: FrameType }),
  }),
});
const ElementInput = builder.inputType('ElementInput', {
  fields: (t) => ({ elementId: t.string({ required: true }) }),
});
const ReferenceVideoInput = builder.inputType('ReferenceVideoInput', {
  fields: (t) => ({
    url: t.string({ required: true }),
    referType: t.field({ type: ReferType, required: true }),
    keepOriginalSound: t.boolean(),
  }),
});
const CreateOmniVideoInput = builder.inputType('CreateOmniVideoInput', {
  fields: (t) => ({
    prompt: t.string({ required: true }),
    modelName: t.string(),
    mode: t.field({ type: OmniMode }),
    aspectRatio: t.field({ type: AspectRatio }),
    durationSeconds: t.int(),
    referenceImages: t.field({ type: [ReferenceImageInput] }),
    elements: t.field({ type: [ElementInput] }),
    referenceVideos: t.field({ type: [ReferenceVideoInput] }),
    externalTaskId: t.string({ description: 'Your own reference, unique per tenant; never sent upstream.' }),
    idempotencyKey: t.string({ description: 'The same key with the same input returns the same task.' }),
    priority: t.field({ type: TaskPriority, description: 'Order among your own waiting tasks; NORMAL by default.' }),
    cancelAfterSeconds: t.int({
      description:
        'Cancel the task (at no charge) if it is still waiting for an upstream slot this many seconds after its creation (1 to 86400).',
    }),
  }),
});

const OmniTaskFilter = builder.inputType('OmniTaskFilter', {
  fields: (t) => ({
    status: t.field({ type: [OmniTaskStatus] }),
    createdAfter: t.field({ type: 'DateTime' }),
    createdBefore: t.field({ type: 'DateTime' }),
  }),
});

builder.objectType(QuotaExceededError, { name: 'QuotaExceededError', interfaces: [ErrorInterface], fields: () => ({}) });
builder.objectType(RateLimitedError, {
  name: 'RateLimitedError',
  interfaces: [ErrorInterface],
  fields: (t) => ({ retryAfterSeconds: t.exposeInt('retryAfterSeconds') }),
});
builder.objectType(UpstreamError, {
  name: 'UpstreamError',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    code: t.string({ nullable: true, resolve: (error) => error.upstreamCode }),
    retryable: t.exposeBoolean('retryable'),
  }),
});

builder.objectType(TaskNotFoundError, { name: 'TaskNotFoundError', interfaces: [ErrorInterface], fields: () => ({}) });
builder.objectType(CancelNotPossibleError, { name: 'CancelNotPossibleError', interfaces: [ErrorInterface], fields: () => ({}) });

const OmniVideoEstimateRef = builder.objectRef<OmniVideoEstimate>('OmniVideoEstimate').implement({
  description: 'What a createOmniVideo of the same input would cost and when it would start; nothing is stored.',
  fields: (t) => ({
    units: t.exposeFloat('units', { description: 'Units at the price table (a base-video edit at its 10 s cap).' }),
    videoSeconds: t.exposeFloat('videoSeconds'),
    remainingMonthlySeconds: t.exposeFloat('remainingMonthlySeconds', {
      nullable: true,
      description: 'Seconds left this month after usage and tasks in flight; null without a monthly limit.',
    }),
    inFlightTasks: t.exposeInt('inFlightTasks', { description: 'Your tasks not yet final.' }),
    maxConcurrentTasks: t.exposeInt('maxConcurrentTasks', { nullable: true }),
    queueAhead: t.exposeInt('queueAhead', { description: 'Waiting tasks that would be sent upstream before this one.' }),
    estimatedStartSeconds: t.exposeFloat('estimatedStartSeconds', {
      nullable: true,
      description: 'Seconds until it would be sent upstream: 0 when a slot is free for it; null when no run time is known yet.',
    }),
  }),
});

builder.queryFields((t) => ({
  estimateOmniVideo: t.withAuth({ tenant: true }).field({
    type: OmniVideoEstimateRef,
    description:
      'The price and queue outlook of a createOmniVideo input, with the same validation; no task is stored, no upstream call made.',
    errors: { types: [InvalidInputError], union: { name: 'EstimateOmniVideoResult' }, directResult: true },
    args: t.validate({ input: t.arg({ type: CreateOmniVideoInput, required: true }) }, z.object({ input: createOmniVideoInputSchema })),
    resolve: (_root, { input }, context) => context.services.tasks.estimate(context.viewer.tenantId, input),
  }),
  omniTask: t.withAuth({ tenant: true }).field({
    type: OmniTaskRef,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, context) => {
      const taskId = fromGlobalId(id, 'OmniTask');
      return taskId === null ? null : context.services.tasks.byId(context.viewer.tenantId, taskId);
    },
  }),
  omniTasks: t.withAuth({ tenant: true }).connection(
    {
      type: OmniTaskRef,
      description: "The tenant's tasks, newest first; `last`/`before` walk back towards the newest.",
      args: { filter: t.arg({ type: OmniTaskFilter }) },
      resolve: (_root, args, context) => {
        if ((args.first != null || args.after != null) && (args.last != null || args.before != null)) {
          throw new InvalidInputError('Page with first/after or with last/before, not both.', [
            { path: ['last'], message: 'cannot be combined with first/after' },
          ]);
        }
        const filter = args.filter ?? {};
        // Inverted pages (last/before) are read oldest first from the cursor; the library puts them back newest first.
        return resolveCursorConnection(
          { args, toCursor: encodeCursor, ...pageSizes(args) },
          ({ after, before, limit, inverted }: ResolveCursorConnectionArgs) =>
            context.services.tasks.page(context.viewer.tenantId, {
              direction: inverted ? 'backward' : 'forward',
              limit,
              cursor: after ? decodeCursor(after, 'after') : before ? decodeCursor(before, 'before') : null,
              filter: { status: filter.status, createdAfter: filter.createdAfter, createdBefore: filter.createdBefore },
            }),
        );
      },
    },
    { name: 'OmniTaskConnection' },
    { name: 'OmniTaskEdge' },
  ),
}));

/** refreshOmniTask asks the upstream on every call. */
const chargeRefresh = perCallCharge();

builder.mutationFields((t) => ({
  createOmniVideo: t.withAuth({ tenant: true }).field({
    type: OmniTaskRef,
    errors: {
      types: [InvalidInputError, QuotaExceededError, RateLimitedError, UpstreamError],
      union: { name: 'CreateOmniVideoResult' },
      result: { name: 'CreateOmniVideoSuccess' },
      dataField: { name: 'task' },
    },
    args: t.validate({ input: t.arg({ type: CreateOmniVideoInput, required: true }) }, z.object({ input: createOmniVideoInputSchema })),
    resolve: async (_root, { input }, context) => {
      const { tenantId, rates } = context.viewer;
      const task = await context.services.tasks.create({ tenantId, createsPerMinute: rates.createsPerMinute }, input);
      context.logger.info(
        {
          taskId: task.id,
          status: task.status,
          mode: task.mode,
          images: input.referenceImages.length,
          videos: input.referenceVideos.length,
        },
        'omni task created',
      );
      return task;
    },
  }),
  cancelOmniTask: t.withAuth({ tenant: true }).field({
    type: OmniTaskRef,
    description:
      'Cancels a task still waiting for an upstream slot: it ends CANCELLED at no charge. A task already sent upstream ' +
      'cannot be cancelled (the upstream has no cancel): CancelNotPossibleError.',
    errors: {
      types: [CancelNotPossibleError, TaskNotFoundError],
      union: { name: 'CancelOmniTaskResult' },
      result: { name: 'CancelOmniTaskSuccess' },
      dataField: { name: 'task' },
    },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, context) => {
      const taskId = fromGlobalId(id, 'OmniTask');
      if (taskId === null) throw new TaskNotFoundError('No task has this id.');
      return context.services.tasks.cancel(context.viewer.tenantId, taskId);
    },
  }),
  refreshOmniTask: t.withAuth({ tenant: true }).field({
    type: OmniTaskRef,
    nullable: true,
    description: "Asks the upstream for the task's state now and applies the answer.",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, context) => {
      // Each refresh asks the upstream, so each counts as a request: the operation itself paid for
      // the first, each further one (aliases) takes one more from the tenant's request rate.
      chargeRefresh(context, () => context.services.rateLimits.admitRequest(context.viewer));
      const taskId = fromGlobalId(id, 'OmniTask');
      return taskId === null ? null : context.services.tasks.refresh(context.viewer.tenantId, taskId);
    },
  }),
}));

builder.subscriptionType({});

builder.subscriptionField('omniTaskUpdated', (t) =>
  t.withAuth({ tenant: true }).field({
    type: OmniTaskRef,
    description:
      "With an id: the task's current state at once, then every change; completes after a final state. " +
      'Without an id: every change of every task of your tenant, creation included. With `after` (a changeCursor, ' +
      'tenant-wide form only): first the latest state of every task changed since that cursor, in log order, then live. ' +
      'A cursor older than the log keeps is an error with code CURSOR_EXPIRED: list the tasks again.',
    args: { id: t.arg.id(), after: t.arg.string() },
    subscribe: (_root, { id, after }, context) => {
      const tenantId = context.viewer.tenantId;
      if (id === null || id === undefined) {
        return context.services.watch.tenant(
          tenantId,
          after === null || after === undefined ? null : context.services.watch.parseCursor(after),
          context.signal,
        );
      }
      if (after !== null && after !== undefined) {
        throw new AppError(
          "`after` resumes the tenant-wide form only; a subscription with an id starts from the task's current state.",
          'BAD_USER_INPUT',
        );
      }
      const taskId = fromGlobalId(id, 'OmniTask');
      if (taskId === null) throw new NotFoundError('No task has this id.');
      return context.services.watch.task(tenantId, taskId, context.signal);
    },
    resolve: (task) => task,
  }),
);
