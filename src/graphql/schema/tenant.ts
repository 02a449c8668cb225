import { resolveCursorConnection } from '@pothos/plugin-relay';
import type { ResolveCursorConnectionArgs } from '@pothos/plugin-relay';
import { z } from 'zod';
import { InvalidInputError, NotFoundError } from '../../errors.ts';
import { fromGlobalId, toGlobalId } from '../../ids.ts';
import type { ApiKey, Tenant } from '../../tenants/tenants.ts';
import { builder } from '../builder.ts';
import { decodeCursor, encodeCursor, pageSizes } from '../cursor.ts';
import { UsageSummaryRef, usageOf } from './usage.ts';
import { isStorableText, STORABLE_TEXT_MESSAGE } from '../../db/storable.ts';

const limitModel = z
  .number()
  .int('must be a whole number')
  .min(0, 'must be 0 or more; use null for no limit')
  .max(1_000_000_000, 'is too large')
  .nullish();

const rateModel = z
  .number()
  .int('must be a whole number')
  .min(1, 'must be at least 1; use null for the default')
  .max(1_000_000, 'is too large')
  .nullish();

const weightModel = z.number().int('must be a whole number').min(1, 'must be at least 1').max(1_000, 'is at most 1000').nullish();

const TenantRef = builder.objectRef<Tenant>('Tenant');

builder.node(TenantRef, {
  id: { resolve: (tenant) => tenant.id },
  // A tenant sees itself; the admin sees every tenant; anyone else gets null, as for an unknown id.
  loadOne: async (id, context) => {
    const viewer = context.viewer;
    if (viewer.kind === 'tenant' && viewer.tenantId !== id) return null;
    return context.services.tenants.getTenant(id);
  },
  fields: (t) => ({
    name: t.exposeString('name'),
    monthlyVideoSecondsLimit: t.exposeInt('monthlyVideoSecondsLimit', { nullable: true }),
    maxConcurrentTasks: t.exposeInt('maxConcurrentTasks', { nullable: true }),
    requestsPerSecond: t.exposeInt('requestsPerSecond', {
      nullable: true,
      description: "This tenant's request rate limit per gateway instance; null means the default.",
    }),
    createsPerMinute: t.exposeInt('createsPerMinute', {
      nullable: true,
      description: "This tenant's createOmniVideo rate limit per gateway instance; null means the default.",
    }),
    weight: t.exposeInt('weight', {
      description: "This tenant's share of the upstream account when tasks wait for a slot (default 1): slots go to tenants in proportion.",
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    usage: t.field({
      type: UsageSummaryRef,
      description: 'Defaults to the current calendar month (UTC).',
      args: { from: t.arg({ type: 'DateTime' }), to: t.arg({ type: 'DateTime' }) },
      resolve: (tenant, args, context) => usageOf(context, tenant.id, args),
    }),
  }),
});

const ViewerRef = builder.objectRef<{ tenantId: string }>('Viewer').implement({
  description: 'The tenant that the API key of this request belongs to.',
  fields: (t) => ({
    tenant: t.field({
      type: TenantRef,
      resolve: async ({ tenantId }, _args, context) => {
        const tenant = await context.services.tenants.getTenant(tenantId);
        if (tenant === null) throw new NotFoundError('The tenant of this API key no longer exists.');
        return tenant;
      },
    }),
    usage: t.field({
      type: UsageSummaryRef,
      description: 'Your usage; defaults to the current calendar month (UTC).',
      args: { from: t.arg({ type: 'DateTime' }), to: t.arg({ type: 'DateTime' }) },
      resolve: ({ tenantId }, args, context) => usageOf(context, tenantId, args),
    }),
  }),
});

builder.queryField('viewer', (t) =>
  t.withAuth({ tenant: true }).field({
    type: ViewerRef,
    resolve: (_root, _args, context) => ({ tenantId: context.viewer.tenantId }),
  }),
);

builder.queryField('tenants', (t) =>
  t.connection(
    {
      type: TenantRef,
      description: 'Every tenant, oldest first (admin).',
      authScopes: { admin: true },
      resolve: async (_root, args, context) => {
        if (args.last != null || args.before != null) {
          throw new InvalidInputError('tenants pages forward only: use first and after.', [
            { path: [args.last != null ? 'last' : 'before'], message: 'not supported on this list' },
          ]);
        }
        return resolveCursorConnection(
          { args, toCursor: encodeCursor, ...pageSizes(args) },
          ({ after, limit }: ResolveCursorConnectionArgs) =>
            context.services.tenants.listTenants({ limit, after: after ? decodeCursor(after, 'after') : null }),
        );
      },
    },
    { name: 'TenantConnection' },
    { name: 'TenantEdge' },
  ),
);

const CreateTenantInput = builder.inputType('CreateTenantInput', {
  fields: (t) => ({
    name: t.string({
      required: true,
      validate: z.string().trim().min(1, 'must not be empty').max(200, 'is too long').refine(isStorableText, STORABLE_TEXT_MESSAGE),
    }),
    monthlyVideoSecondsLimit: t.int({ validate: limitModel }),
    maxConcurrentTasks: t.int({ validate: limitModel }),
    requestsPerSecond: t.int({ validate: rateModel }),
    createsPerMinute: t.int({ validate: rateModel }),
    weight: t.int({ validate: weightModel, description: 'Share of the upstream account (1 to 1000); null or omitted: 1.' }),
  }),
});

const ApiKeyRef = builder.objectRef<ApiKey>('ApiKey');

builder.node(ApiKeyRef, {
  id: { resolve: (key) => key.id },
  description: 'An API key of a tenant, as the admin sees it: never the key itself.',
  // Keys are the admin's business only: for anyone else an id of a key is like an unknown id.
  loadOne: (id, context) => (context.viewer.kind === 'admin' ? context.services.tenants.getApiKey(id) : null),
  fields: (t) => ({
    prefix: t.exposeString('prefix', { description: 'The first characters of the key, to tell keys apart.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.queryField('apiKeys', (t) =>
  t.field({
    type: [ApiKeyRef],
    description: "A tenant's API keys, oldest first (admin).",
    authScopes: { admin: true },
    args: { tenantId: t.arg.id({ required: true }) },
    resolve: async (_root, { tenantId }, context) => {
      const id = fromGlobalId(tenantId, 'Tenant');
      const keys = id === null ? null : await context.services.tenants.listApiKeys(id);
      if (keys === null) throw new NotFoundError('No tenant has this id.');
      return keys;
    },
  }),
);

const CreateTenantPayload = builder.objectRef<{ tenant: Tenant; apiKey: string; apiKeyId: string }>('CreateTenantPayload').implement({
  fields: (t) => ({
    tenant: t.field({ type: TenantRef, resolve: (payload) => payload.tenant }),
    apiKey: t.exposeString('apiKey', { description: 'Shown once; only its hash is kept.' }),
    apiKeyId: t.id({
      description: 'The id of that key, to revoke it later.',
      resolve: (payload) => toGlobalId('ApiKey', payload.apiKeyId),
    }),
  }),
});

const CreateApiKeyPayload = builder.objectRef<{ id: string; apiKey: string }>('CreateApiKeyPayload').implement({
  fields: (t) => ({
    id: t.id({ resolve: (payload) => toGlobalId('ApiKey', payload.id) }),
    apiKey: t.exposeString('apiKey', { description: 'Shown once; only its hash is kept.' }),
  }),
});

const UpdateTenantLimitsInput = builder.inputType('UpdateTenantLimitsInput', {
  fields: (t) => ({
    tenantId: t.id({ required: true }),
    monthlyVideoSecondsLimit: t.int({ validate: limitModel }),
    maxConcurrentTasks: t.int({ validate: limitModel }),
    requestsPerSecond: t.int({ validate: rateModel }),
    createsPerMinute: t.int({ validate: rateModel }),
    weight: t.int({ validate: weightModel, description: 'Share of the upstream account (1 to 1000); null restores 1, omitted leaves it.' }),
  }),
});

builder.mutationFields((t) => ({
  createTenant: t.field({
    type: CreateTenantPayload,
    authScopes: { admin: true },
    args: { input: t.arg({ type: CreateTenantInput, required: true }) },
    resolve: (_root, { input }, context) =>
      context.services.tenants.createTenant({
        name: input.name.trim(),
        monthlyVideoSecondsLimit: input.monthlyVideoSecondsLimit,
        maxConcurrentTasks: input.maxConcurrentTasks,
        requestsPerSecond: input.requestsPerSecond,
        createsPerMinute: input.createsPerMinute,
        weight: input.weight,
      }),
  }),
  createApiKey: t.field({
    type: CreateApiKeyPayload,
    authScopes: { admin: true },
    args: { tenantId: t.arg.id({ required: true }) },
    resolve: async (_root, { tenantId }, context) => {
      const id = fromGlobalId(tenantId, 'Tenant');
      const created = id === null ? null : await context.services.tenants.createApiKey(id);
      if (created === null) throw new NotFoundError('No tenant has this id.');
      return created;
    },
  }),
  revokeApiKey: t.boolean({
    description: 'True when a live key was revoked; false when the id is unknown or already revoked.',
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, context) => {
      const keyId = fromGlobalId(id, 'ApiKey');
      return keyId === null ? false : context.services.tenants.revokeApiKey(keyId);
    },
  }),
  updateTenantLimits: t.field({
    type: TenantRef,
    description: "Sets a tenant's limits; an omitted field is left as it is, null removes the limit (admin).",
    authScopes: { admin: true },
    args: { input: t.arg({ type: UpdateTenantLimitsInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = fromGlobalId(input.tenantId, 'Tenant');
      const tenant =
        id === null
          ? null
          : await context.services.tenants.updateLimits(id, {
              monthlyVideoSecondsLimit: input.monthlyVideoSecondsLimit,
              maxConcurrentTasks: input.maxConcurrentTasks,
              requestsPerSecond: input.requestsPerSecond,
              createsPerMinute: input.createsPerMinute,
              // null restores the default share
              weight: input.weight === null ? 1 : input.weight,
            });
      if (tenant === null) throw new NotFoundError('No tenant has this id.');
      return tenant;
    },
  }),
}));
