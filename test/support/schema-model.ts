import { expectData } from './gateway.ts';
import type { TestGateway } from './gateway.ts';

// A model of the live schema, read by introspection, for tests that iterate over every root field
// (the isolation matrix, the schema fuzz): a field added to the schema is covered without a new test.

export type TypeRef = { kind: string; name: string | null; ofType: TypeRef | null };
export type InputValue = { name: string; type: TypeRef; defaultValue: string | null };
export type Field = { name: string; args: InputValue[]; type: TypeRef };
export type FullType = {
  kind: string;
  name: string;
  fields: Field[] | null;
  inputFields: InputValue[] | null;
  possibleTypes: { name: string }[] | null;
  enumValues: { name: string }[] | null;
};
export type RootKind = 'Query' | 'Mutation' | 'Subscription';
export type SchemaModel = { roots: Record<RootKind, string | null>; types: Map<string, FullType> };

// Shallow (deep enough for [T!]!) so that the introspection itself stays within the depth limit.
const TYPE_REF = 'kind name ofType { kind name ofType { kind name ofType { kind name } } }';
// Deprecated fields, arguments and values are still served, so they are part of the surface.
const INTROSPECTION = `{
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      kind name
      fields(includeDeprecated: true) { name args(includeDeprecated: true) { name defaultValue type { ${TYPE_REF} } } type { ${TYPE_REF} } }
      inputFields(includeDeprecated: true) { name defaultValue type { ${TYPE_REF} } }
      possibleTypes { name }
      enumValues(includeDeprecated: true) { name }
    }
  }
}`;

export async function introspect(gateway: TestGateway, apiKey: string): Promise<SchemaModel> {
  type Answer = {
    __schema: {
      queryType: { name: string } | null;
      mutationType: { name: string } | null;
      subscriptionType: { name: string } | null;
      types: FullType[];
    };
  };
  const data = expectData(await gateway.graphql<Answer>(INTROSPECTION, {}, apiKey), INTROSPECTION).__schema;
  return {
    roots: {
      Query: data.queryType?.name ?? null,
      Mutation: data.mutationType?.name ?? null,
      Subscription: data.subscriptionType?.name ?? null,
    },
    types: new Map(data.types.map((type) => [type.name, type])),
  };
}

/** The named type under NON_NULL and LIST wrappers. */
export function named(ref: TypeRef): TypeRef {
  let at = ref;
  while (at.kind === 'NON_NULL' || at.kind === 'LIST') {
    if (at.ofType === null) throw new Error('type reference nested deeper than the introspection query reads');
    at = at.ofType;
  }
  return at;
}

/** The full type a reference names (fails on a name the model does not hold). */
export function typeOf(schema: SchemaModel, ref: TypeRef): FullType {
  const name = named(ref).name!;
  const type = schema.types.get(name);
  if (type === undefined) throw new Error(`type ${name} is not in the introspected schema`);
  return type;
}

/** An argument or input field that must be given: non-null without a default. */
export const required = (value: InputValue) => value.type.kind === 'NON_NULL' && value.defaultValue === null;

/** The object types a type name stands for: itself, or the members of a union or interface. */
export function possibleTypes(schema: SchemaModel, name: string): Set<string> {
  const type = schema.types.get(name)!;
  return new Set(type.kind === 'OBJECT' ? [name] : (type.possibleTypes ?? []).map((t) => t.name));
}

/** Every field of every root type, queries first. */
export function rootFields(schema: SchemaModel): { root: RootKind; field: Field }[] {
  return (['Query', 'Mutation', 'Subscription'] as const).flatMap((root) => {
    const name = schema.roots[root];
    return name === null ? [] : schema.types.get(name)!.fields!.map((field) => ({ root, field }));
  });
}

/** A type reference as written in a variable definition, e.g. `[OmniTaskStatus!]`. */
export function printTypeRef(ref: TypeRef): string {
  if (ref.kind === 'NON_NULL') return `${printTypeRef(ref.ofType!)}!`;
  if (ref.kind === 'LIST') return `[${printTypeRef(ref.ofType!)}]`;
  return ref.name!;
}
