/**
 * The limits on a GraphQL document and their defaults. A leaf module: configuration sets them
 * without importing the GraphQL layer, which enforces them (graphql/limits.ts).
 */
export type QueryLimits = {
  /** Nesting of fields and fragments (inline or spread, each a level); introspection fields count like any other. */
  depth: number;
  /** Aliased fields in the operation, fragments expanded. */
  aliases: number;
  /** Lexical tokens of the document (comments excluded). */
  tokens: number;
  /** Directives in the operation, fragments expanded. */
  directives: number;
  /** Fields weighted by the page sizes above them (see `fieldFactor` in graphql/limits.ts). */
  cost: number;
  /** Characters of the query text: values belong in variables. */
  length: number;
};

export const DEFAULT_QUERY_LIMITS: QueryLimits = {
  depth: 10,
  aliases: 30,
  tokens: 2_000,
  directives: 50,
  cost: 5_000,
  length: 32 * 1024,
};
