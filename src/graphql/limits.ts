import { GraphQLError, Kind, parse } from 'graphql';
import type { FragmentDefinitionNode, SelectionSetNode, ValidationContext, ValidationRule } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { QueryLimits } from '../query-limits.ts';

/** The page size assumed for a connection whose `first`/`last` is a variable (MAX_PAGE_SIZE). */
const VARIABLE_PAGE_SIZE = 100;

function limitError(limit: keyof QueryLimits, found: string, max: number): GraphQLError {
  return new GraphQLError(`Query refused: its ${limit} (${found}) exceeds the limit of ${max}.`, {
    extensions: { code: 'QUERY_LIMIT', limit, max },
  });
}

type Measure = (selectionSet: SelectionSetNode) => number;

/**
 * A rule that measures every operation with `measure` (fragments expanded through `expand`),
 * memoising fragments so that a fragment spread many times is measured once.
 */
function measuredRule(limit: keyof QueryLimits, max: number, build: (fragmentValue: (name: string) => number) => Measure): ValidationRule {
  return (context: ValidationContext) => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const definition of context.getDocument().definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
    }
    const memo = new Map<string, number>();
    const measure: Measure = build((name) => {
      const known = memo.get(name);
      if (known !== undefined) return known;
      const fragment = fragments.get(name);
      memo.set(name, 0); // a cycle (reported by NoFragmentCyclesRule) must not recurse forever
      const value = fragment === undefined ? 0 : measure(fragment.selectionSet);
      memo.set(name, value);
      return value;
    });
    return {
      OperationDefinition(operation) {
        const value = measure(operation.selectionSet);
        if (value > max) context.reportError(limitError(limit, String(value), max));
      },
    };
  };
}

const depthRule = (max: number) =>
  measuredRule('depth', max, (fragment) => {
    const depth: Measure = (set) =>
      Math.max(
        0,
        ...set.selections.map((selection) => {
          if (selection.kind === Kind.FIELD) return 1 + (selection.selectionSet ? depth(selection.selectionSet) : 0);
          // Fragments count as a level, inline or spread: fifty nested `... on Node { … }` cost the
          // validator as much as fifty nested fields.
          if (selection.kind === Kind.INLINE_FRAGMENT) return 1 + depth(selection.selectionSet);
          return 1 + fragment(selection.name.value);
        }),
      );
    return depth;
  });

const countRule = (limit: 'aliases' | 'directives', max: number) =>
  measuredRule(limit, max, (fragment) => {
    const count: Measure = (set) => {
      let total = 0;
      for (const selection of set.selections) {
        if (limit === 'directives') total += selection.directives?.length ?? 0;
        if (selection.kind === Kind.FIELD) {
          if (limit === 'aliases' && selection.alias) total += 1;
          if (selection.selectionSet) total += count(selection.selectionSet);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) total += count(selection.selectionSet);
        else total += fragment(selection.name.value);
      }
      return total;
    };
    return count;
  });

/** How many times a field's children are resolved: its `first`/`last` page size, else once. */
function fieldFactor(field: { arguments?: readonly { name: { value: string }; value: { kind: string; value?: unknown } }[] }): number {
  const size = field.arguments?.find((argument) => argument.name.value === 'first' || argument.name.value === 'last');
  if (size === undefined) return 1;
  if (size.value.kind === Kind.INT) return Math.max(1, Number(size.value.value));
  return VARIABLE_PAGE_SIZE;
}

const costRule = (max: number) =>
  measuredRule('cost', max, (fragment) => {
    const cost: Measure = (set) => {
      let total = 0;
      for (const selection of set.selections) {
        if (selection.kind === Kind.FIELD) {
          total += 1 + (selection.selectionSet ? fieldFactor(selection) * cost(selection.selectionSet) : 0);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) total += cost(selection.selectionSet);
        else total += fragment(selection.name.value);
      }
      return total;
    };
    return cost;
  });

/** Refuses expensive documents before execution; every refusal names the limit it hit. */
export function useQueryLimits(limits: QueryLimits): Plugin {
  return {
    onParse({ setParseFn }) {
      setParseFn((source, options) => {
        const text = typeof source === 'string' ? source : source.body;
        if (text.length > limits.length) throw limitError('length', `${text.length} characters`, limits.length);
        try {
          return parse(source, { ...options, maxTokens: limits.tokens + 1 });
        } catch (error) {
          if (error instanceof GraphQLError && /contains more than \d+ tokens/.test(error.message)) {
            throw limitError('tokens', `more than ${limits.tokens}`, limits.tokens);
          }
          throw error;
        }
      });
    },
    onValidate({ addValidationRule }) {
      addValidationRule(depthRule(limits.depth));
      addValidationRule(countRule('aliases', limits.aliases));
      addValidationRule(countRule('directives', limits.directives));
      addValidationRule(costRule(limits.cost));
    },
  };
}

/** graphql-js suggests field names ("Did you mean …?"): that maps the schema for a stranger. */
export function useHiddenSuggestions(): Plugin {
  return {
    onValidate() {
      return ({ result, setResult }) => {
        if (result.length === 0) return;
        setResult(
          result.map((error) =>
            error.message.includes('Did you mean')
              ? new GraphQLError(error.message.replace(/\s*Did you mean .*$/s, ''), {
                  nodes: error.nodes,
                  extensions: error.extensions,
                })
              : error,
          ),
        );
      };
    },
  };
}
