import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Types for every operation in src/, from the gateway's printed schema (the gateway's depth limit
 * refuses the introspection query, so codegen reads the SDL file, never the live endpoint).
 * `npm run codegen -w examples/web` rewrites src/gql/; a test fails when it is stale.
 */
const config: CodegenConfig = {
  schema: '../../schema/schema.graphql',
  documents: ['src/**/*.{ts,tsx}', '!src/gql/**'],
  ignoreNoDocuments: false,
  generates: {
    'src/gql/': {
      preset: 'client',
      presetConfig: {
        // The live store merges a task from a list, a detail query and the subscription by
        // version: plain (unmasked) fragment types keep that merge simple.
        fragmentMasking: false,
      },
      config: {
        scalars: { DateTime: 'string' },
        enumsAsTypes: true,
        useTypeImports: true,
        onlyOperationTypes: true,
        avoidOptionals: false,
      },
    },
  },
};

export default config;
