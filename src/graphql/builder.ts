import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import { ForbiddenError, InvalidInputError } from '../errors.ts';
import type { GraphQLContext, TenantContext } from './context.ts';

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
          path: (issue.path ?? []).map((segment) =>
            String(typeof segment === 'object' && segment !== null ? segment.key : segment),
          ),
          message: issue.message,
        })),
      ),
  },
});

builder.queryType({});
builder.mutationType({});
