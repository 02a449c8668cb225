import { resolveCursorConnection } from '@pothos/plugin-relay';
import type { ResolveCursorConnectionArgs } from '@pothos/plugin-relay';
import { z } from 'zod';
import { isStorableText, STORABLE_TEXT_MESSAGE } from '../../db/storable.ts';
import { InvalidInputError, NotFoundError } from '../../errors.ts';
import { fromGlobalId } from '../../ids.ts';
import type { DeliveryStatus, WebhookDelivery, WebhookEndpoint } from '../../webhooks/endpoints.ts';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/outbound-events.ts';
import type { WebhookEventType as EventTypeName } from '../../webhooks/outbound-events.ts';
import { builder } from '../builder.ts';
import { perCallCharge } from './per-call-charge.ts';
import type { TenantContext } from '../context.ts';
import { decodeCursor, encodeCursor, pageSizes } from '../cursor.ts';

export const WebhookEventType = builder.enumType('WebhookEventType', {
  values: WEBHOOK_EVENT_TYPES,
  description: 'TASK_UPDATED: every change of a task. TASK_SUCCEEDED, TASK_FAILED, TASK_CANCELLED: the change into that status.',
});
const DELIVERY_STATUSES = { PENDING: 'pending', SUCCEEDED: 'succeeded', FAILED: 'failed' } as const;
const WebhookDeliveryStatus = builder.enumType('WebhookDeliveryStatus', { values: ['PENDING', 'SUCCEEDED', 'FAILED'] as const });
const toApiStatus = (status: DeliveryStatus) => status.toUpperCase() as keyof typeof DELIVERY_STATUSES;

const urlModel = z.string().trim().min(1, 'must not be empty').max(2_000, 'is too long').refine(isStorableText, STORABLE_TEXT_MESSAGE);
const eventsModel = z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1, 'must name at least one event type');
const descriptionModel = z.string().max(500, 'is too long').refine(isStorableText, STORABLE_TEXT_MESSAGE).nullish();

const WebhookEndpointRef = builder.objectRef<WebhookEndpoint>('WebhookEndpoint');
builder.node(WebhookEndpointRef, {
  id: { resolve: (endpoint) => endpoint.id },
  description:
    'An HTTPS endpoint of your backend that receives signed events (Standard Webhooks). Its secret is shown only when it is made.',
  loadOne: (id, context) => (context.viewer.kind === 'tenant' ? context.services.webhooks.get(context.viewer.tenantId, id) : null),
  fields: (t) => ({
    url: t.exposeString('url'),
    events: t.field({ type: [WebhookEventType], resolve: (endpoint) => endpoint.events as EventTypeName[] }),
    description: t.exposeString('description', { nullable: true }),
    enabled: t.exposeBoolean('enabled'),
    disabledReason: t.exposeString('disabledReason', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    failingSince: t.expose('failingSince', {
      type: 'DateTime',
      nullable: true,
      description: 'The first failed attempt since the last success; the endpoint is disabled once this is 5 days old.',
    }),
  }),
});

type Attempt = { at: Date; httpStatus: number | null; durationMs: number | null; error: string | null };
const WebhookAttemptRef = builder.objectRef<Attempt>('WebhookAttempt').implement({
  fields: (t) => ({
    at: t.expose('at', { type: 'DateTime' }),
    httpStatus: t.exposeInt('httpStatus', {
      nullable: true,
      description: 'Null when no HTTP answer came (refused, network error, timeout).',
    }),
    durationMs: t.exposeInt('durationMs', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
  }),
});

const WebhookDeliveryRef = builder.objectRef<WebhookDelivery>('WebhookDelivery');
builder.node(WebhookDeliveryRef, {
  id: { resolve: (delivery) => delivery.id },
  description: 'One event for one endpoint, with every attempt to send it.',
  loadOne: (id, context) => (context.viewer.kind === 'tenant' ? context.services.webhooks.delivery(context.viewer.tenantId, id) : null),
  fields: (t) => ({
    eventId: t.exposeString('eventId', { description: 'The `webhook-id` header: the same on every attempt and redelivery.' }),
    eventType: t.field({ type: WebhookEventType, resolve: (delivery) => delivery.eventType as EventTypeName }),
    status: t.field({ type: WebhookDeliveryStatus, resolve: (delivery) => toApiStatus(delivery.status) }),
    attempts: t.field({
      type: [WebhookAttemptRef],
      resolve: (delivery) => delivery.attempts.map((attempt) => ({ ...attempt, at: new Date(attempt.at) })),
    }),
    nextAttemptAt: t.expose('nextAttemptAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const SecretPayload = (name: string) =>
  builder.objectRef<{ endpoint: WebhookEndpoint; secret: string }>(name).implement({
    fields: (t) => ({
      endpoint: t.field({ type: WebhookEndpointRef, resolve: (payload) => payload.endpoint }),
      secret: t.exposeString('secret', { description: 'The `whsec_` signing secret. It is shown only here: keep it.' }),
    }),
  });
const CreateWebhookEndpointPayload = SecretPayload('CreateWebhookEndpointPayload');
const RotateWebhookSecretPayload = SecretPayload('RotateWebhookSecretPayload');

const CreateWebhookEndpointInput = builder.inputType('CreateWebhookEndpointInput', {
  fields: (t) => ({
    url: t.string({ required: true, validate: urlModel }),
    events: t.field({ type: [WebhookEventType], required: true, validate: eventsModel }),
    description: t.string({ validate: descriptionModel }),
  }),
});
const UpdateWebhookEndpointInput = builder.inputType('UpdateWebhookEndpointInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    url: t.string({ validate: urlModel.nullish() }),
    events: t.field({ type: [WebhookEventType], validate: eventsModel.nullish() }),
    description: t.string({ validate: descriptionModel }),
    enabled: t.boolean(),
  }),
});
const WebhookDeliveryFilter = builder.inputType('WebhookDeliveryFilter', {
  fields: (t) => ({ status: t.field({ type: [WebhookDeliveryStatus] }) }),
});

const endpointIdOf = (id: string) => fromGlobalId(id, 'WebhookEndpoint');
const notFound = () => new NotFoundError('No webhook endpoint of yours has this id.');

function forwardOnly(args: { last?: number | null; before?: string | null }, list: string): void {
  if (args.last != null || args.before != null) {
    throw new InvalidInputError(`${list} pages forward only: use first and after.`, [
      { path: [args.last != null ? 'last' : 'before'], message: 'not supported on this list' },
    ]);
  }
}

builder.queryFields((t) => ({
  webhookEndpoints: t.withAuth({ tenant: true }).connection(
    {
      type: WebhookEndpointRef,
      description: 'Your webhook endpoints, oldest first.',
      resolve: (_root, args, context) => {
        forwardOnly(args, 'webhookEndpoints');
        return resolveCursorConnection(
          { args, toCursor: encodeCursor, ...pageSizes(args) },
          ({ after, limit }: ResolveCursorConnectionArgs) =>
            context.services.webhooks.list(context.viewer.tenantId, { limit, after: after ? decodeCursor(after, 'after') : null }),
        );
      },
    },
    { name: 'WebhookEndpointConnection' },
    { name: 'WebhookEndpointEdge' },
  ),
  webhookDeliveries: t.withAuth({ tenant: true }).connection(
    {
      type: WebhookDeliveryRef,
      description: "An endpoint's deliveries, newest first, each with its attempts.",
      args: { endpointId: t.arg.id({ required: true }), filter: t.arg({ type: WebhookDeliveryFilter }) },
      resolve: async (_root, args, context) => {
        forwardOnly(args, 'webhookDeliveries');
        const endpointId = endpointIdOf(args.endpointId);
        if (endpointId === null) throw notFound();
        const status = args.filter?.status?.map((value) => DELIVERY_STATUSES[value]) ?? null;
        let missing = false;
        const connection = await resolveCursorConnection(
          { args, toCursor: encodeCursor, ...pageSizes(args) },
          async ({ after, limit }: ResolveCursorConnectionArgs) => {
            const page = after ? decodeCursor(after, 'after') : null;
            const rows = await context.services.webhooks.deliveries(context.viewer.tenantId, endpointId, { limit, after: page, status });
            missing = rows === null;
            return rows ?? [];
          },
        );
        if (missing) throw notFound();
        return connection;
      },
    },
    { name: 'WebhookDeliveryConnection' },
    { name: 'WebhookDeliveryEdge' },
  ),
}));

const tenantOf = (context: TenantContext) => context.viewer.tenantId;

/** sendTestWebhook makes a delivery on every call. */
const chargeTestSend = perCallCharge();

builder.mutationFields((t) => ({
  createWebhookEndpoint: t.withAuth({ tenant: true }).field({
    type: CreateWebhookEndpointPayload,
    description: 'Only http(s) URLs at public addresses (unless the gateway allows private ones); redirects are not followed.',
    args: { input: t.arg({ type: CreateWebhookEndpointInput, required: true }) },
    resolve: (_root, { input }, context) =>
      context.services.webhooks.create(tenantOf(context), {
        url: input.url,
        events: input.events,
        description: input.description ?? null,
      }),
  }),
  updateWebhookEndpoint: t.withAuth({ tenant: true }).field({
    type: WebhookEndpointRef,
    nullable: true,
    description: 'Changes only the fields given. Enabling clears the disabled reason and the failing period. Null for an unknown id.',
    args: { input: t.arg({ type: UpdateWebhookEndpointInput, required: true }) },
    resolve: (_root, { input }, context) => {
      const id = endpointIdOf(input.id);
      if (id === null) return null;
      return context.services.webhooks.update(tenantOf(context), id, {
        url: input.url,
        events: input.events,
        description: input.description,
        enabled: input.enabled,
      });
    },
  }),
  deleteWebhookEndpoint: t.withAuth({ tenant: true }).boolean({
    description: 'Deletes the endpoint and its delivery log; false for an unknown id.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, context) => {
      const endpointId = endpointIdOf(id);
      return endpointId === null ? false : context.services.webhooks.remove(tenantOf(context), endpointId);
    },
  }),
  rotateWebhookSecret: t.withAuth({ tenant: true }).field({
    type: RotateWebhookSecretPayload,
    description: 'A new secret, shown once; for 24 h the old one also signs every delivery, beside the new.',
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, context) => {
      const endpointId = endpointIdOf(id);
      const rotated = endpointId === null ? null : await context.services.webhooks.rotate(tenantOf(context), endpointId);
      if (rotated === null) throw notFound();
      return rotated;
    },
  }),
  sendTestWebhook: t.withAuth({ tenant: true }).field({
    type: WebhookDeliveryRef,
    nullable: true,
    description:
      'Queues a `task.updated` event with `data.test: true` and `data.task: null` to the endpoint, even a disabled one. Null for an unknown id.',
    args: { endpointId: t.arg.id({ required: true }) },
    resolve: (_root, { endpointId }, context) => {
      // Each test send makes a delivery: the operation paid for the first, each further one (aliases)
      // takes one more from the tenant's request rate, like refreshOmniTask.
      chargeTestSend(context, () => context.services.rateLimits.admitRequest(context.viewer));
      const id = endpointIdOf(endpointId);
      return id === null ? null : context.services.webhooks.sendTest(tenantOf(context), id, new Date());
    },
  }),
  redeliverWebhook: t.withAuth({ tenant: true }).field({
    type: WebhookDeliveryRef,
    nullable: true,
    description: 'Sends a finished delivery again (same webhook-id and body, a new run of the retry schedule). Null for an unknown id.',
    args: { deliveryId: t.arg.id({ required: true }) },
    resolve: (_root, { deliveryId }, context) => {
      const id = fromGlobalId(deliveryId, 'WebhookDelivery');
      return id === null ? null : context.services.webhooks.redeliver(tenantOf(context), id);
    },
  }),
}));
