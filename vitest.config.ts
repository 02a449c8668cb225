import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Vitest resolves `graphql` with the `development` condition while Node does not; two copies
    // of graphql then refuse each other's schema objects. Pin the file Node itself loads.
    alias: {
      graphql: fileURLToPath(new URL('./node_modules/graphql/index.mjs', import.meta.url)),
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
