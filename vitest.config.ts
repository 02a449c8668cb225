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
    // Each worker runs its test files one after another without loading the modules again for each
    // (about 2.5 s a file here, a third of a run). Every test file builds its own gateway, database
    // and simulator; src/ keeps no state at module level that a test depends on.
    isolate: false,
    // On PGlite, one migrated database dumped once per run, from which each test database starts.
    globalSetup: ['./test/support/pglite-snapshot.ts'],
    // `postgres`: PostgreSQL-only tests (POSTGRES_ONLY in test/support/database.ts), skipped without
    // DATABASE_URL; the second reporter says at the end how many a run skipped. `.ci/run` passes its
    // own --reporter flags, which replace these.
    tags: [{ name: 'postgres', description: 'needs PostgreSQL: set DATABASE_URL (skipped on PGlite)' }],
    reporters: ['default', './test/support/postgres-only-reporter.ts'],
  },
});
