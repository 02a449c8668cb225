import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import type { TestUserConfig } from 'vitest/config';

const TEST_FILES = 'test/**/*.test.ts';

/**
 * Test files that hold deadlines under load, time their work, start child processes or a browser,
 * or drive the CPU hard: they run one at a time, after the rest.
 */
const ALONE = [
  'test/reliability/*.test.ts',
  'test/web/*.test.ts',
  'test/main.test.ts',
  'test/tenants/sandbox.test.ts',
  'test/archive/restart.test.ts',
  'test/security/callback-flood.test.ts',
  'test/security/schema-fuzz.test.ts',
  'test/live/log-order.test.ts',
  'test/live/subscriptions.test.ts',
  'test/scheduling/fair-queue.test.ts',
  'test/hardening/limits.test.ts',
];

const test: TestUserConfig = {
  testTimeout: 30_000,
  hookTimeout: 60_000,
  pool: 'forks',
  // On PGlite, one migrated database dumped once per run, from which each test database starts.
  globalSetup: ['./test/support/pglite-snapshot.ts'],
  // `postgres`: PostgreSQL-only tests (POSTGRES_ONLY in test/support/database.ts), skipped without
  // DATABASE_URL; the second reporter says at the end how many a run skipped. `.ci/run` passes its
  // own --reporter flags, which replace these.
  tags: [{ name: 'postgres', description: 'needs PostgreSQL: set DATABASE_URL (skipped on PGlite)' }],
  reporters: ['default', './test/support/postgres-only-reporter.ts'],
};

const resolve = {
  // Vitest resolves `graphql` with the `development` condition while Node does not; two copies
  // of graphql then refuse each other's schema objects. Pin the file Node itself loads.
  alias: {
    graphql: fileURLToPath(new URL('./node_modules/graphql/index.mjs', import.meta.url)),
  },
};

/** Every test file in one project: what `npm run mutate` builds on (vitest.mutate.config.ts). */
export const shared = defineConfig({ resolve, test: { ...test, include: [TEST_FILES] } });

/**
 * `npm test`: the short test files, which wait on the database and sockets more than on the CPU,
 * two at a time; then the others one at a time.
 */
export default defineConfig({
  resolve,
  test: {
    ...test,
    projects: [
      { extends: true, test: { name: 'paired', include: [TEST_FILES], exclude: ALONE, maxWorkers: 2, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'alone', include: ALONE, maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
