import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import { ForbiddenError, InvalidInputError } from '../errors.ts';
import { isUuid } from '../ids.ts';
import type { GraphQLContext, TenantContext } from './context.ts';

/** The node types `node(id:)` loads; each registers a loadOne that applies the caller's scope. */
const LOADABLE_NODES = new Set(['OmniTask', 'Tenant', 'ApiKey', 'WebhookEndpoint', 'WebhookDelivery']);

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  AuthScopes: { admin: boolean; tenant: boolean };
  AuthContexts: { tenant: TenantContext };
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    ID: { Input: string; Output: string };
  };
  DefaultFieldNullability: false;
  DefaultEdgesNullability: false;
  DefaultNodeNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, ErrorsPlugin, RelayPlugin, ValidationPlugin],
  scopeAuth: {
    authScopes: (context) => ({
      admin: context.viewer.kind === 'admin',
      tenant: context.viewer.kind === 'tenant',
    }),
    authorizeOnSubscribe: true,
    unauthorizedError: () => new ForbiddenError(),
  },
  errors: {
    defaultTypes: [],
    // Validation failures become InvalidInputError data instead of GraphQL errors. They are then
    // answered before the field's scope check; only authenticated callers get this far, and the
    // answer describes nothing but their own input.
    unsafelyHandleInputErrors: true,
  },
  relay: {
    // An id of a type that cannot be loaded, or whose id part is not one of our uuids, is no node:
    // null, like an unknown id, instead of an error naming schema internals or a failed query.
    nodeQueryOptions: {
      resolve: (_root, { id }, _context, _info, resolveNode) =>
        LOADABLE_NODES.has(id.typename) && isUuid(String(id.id)) ? resolveNode(id) : null,
    },
    clientMutationId: 'omit',
    cursorType: 'String',
    nodesQueryOptions: false,
    edgesFieldOptions: { nullable: false },
    nodeFieldOptions: { nullable: false },
  },
  validation: {
    validationError: (failure) =>
      new InvalidInputError(
        'The input is invalid; see issues for each field.',
        failure.issues.map((issue) => ({
          path: (issue.path ?? []).map((segment) => String(typeof segment === 'object' && segment !== null ? segment.key : segment)),
          message: issue.message,
        })),
      ),
  },
});

builder.queryType({});
builder.mutationType({});
