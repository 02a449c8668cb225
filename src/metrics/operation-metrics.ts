import { Kind } from 'graphql';
import type { OperationDefinitionNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Metrics } from './metrics.ts';

/** The operation's type and first root field, a bounded set for metric labels. */
function operationLabels(document: unknown, operationName: string | null | undefined): { type: string; field: string } {
  const definitions = (document as { definitions?: readonly { kind: string }[] } | undefined)?.definitions ?? [];
  const operations = definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operations.find((o) => !operationName || o.name?.value === operationName) ?? operations[0];
  const first = operation?.selectionSet.selections.find((s) => s.kind === Kind.FIELD);
  return { type: operation?.operation ?? 'unknown', field: first?.kind === Kind.FIELD ? first.name.value : 'unknown' };
}

/** Times every GraphQL operation by type, root field and outcome (subscriptions: until the stream is set up). */
export function useOperationMetrics(metrics: Metrics): Plugin {
  const observe = (args: { document: unknown; operationName?: string | null }, started: number, ok: boolean) => {
    const labels = operationLabels(args.document, args.operationName);
    metrics.graphql(labels.type, labels.field, ok ? 'ok' : 'error', (performance.now() - started) / 1000);
  };
  return {
    onExecute({ args }) {
      const started = performance.now();
      return { onExecuteDone: ({ result }) => observe(args, started, !('errors' in result && result.errors?.length)) };
    },
    onSubscribe({ args }) {
      const started = performance.now();
      return { onSubscribeResult: ({ result }) => observe(args, started, !('errors' in result && result.errors?.length)) };
    },
  };
}
