// @ts-check
/**
 * Mutation testing (`npm run mutate`) of the modules that hold money, tenancy, keys and state.
 * The report: reports/mutation/index.html. Incremental: results are kept in
 * reports/stryker-incremental.json (git-ignored, local to a checkout), so a rerun tests only the
 * mutants whose code or covering tests changed. Not part of CI. See "Mutation testing" in README.md.
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  testRunner: 'vitest',
  // Vitest's own config (graphql alias included), narrowed to the test files that can see a mutant.
  vitest: { configFile: 'vitest.mutate.config.ts' },
  // Each mutant runs only the tests that reached its code in the first, instrumented run.
  coverageAnalysis: 'perTest',
  mutate: [
    'src/tasks/state.ts',
    'src/tasks/commands.ts',
    'src/tasks/create-input.ts',
    'src/tasks/watch.ts',
    'src/pubsub/change-log.ts',
    'src/metering/*.ts',
    'src/auth/*.ts',
    'src/webhooks/tokens.ts',
    'src/storage/signed-url.ts',
  ],
  // Code run while a test file loads or in its beforeAll (a gateway being built) has no test of its
  // own: Stryker would run every test file for each such "static" mutant (about 60% of them, and
  // 99% of the time). They are reported as Ignored, outside the score.
  ignoreStatic: true,
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['html', 'clear-text', 'progress', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  // Two test runners on a two-core machine; tests start gateways and databases, so give them time.
  concurrency: 2,
  timeoutMS: 20_000,
  // The first, instrumented run of every selected test file; ~5 min on two busy cores.
  dryRunTimeoutMinutes: 30,
  timeoutFactor: 2,
  tempDirName: '.stryker-tmp',
  // Stryker rewrites the tsconfig it copies into its sandbox with TypeScript's JavaScript API, which
  // TypeScript 7 (native) does not have; this tsconfig.json needs no rewriting, so point it elsewhere.
  tsconfigFile: 'no-tsconfig-rewrite.json',
  // Biome and TypeScript are not run on mutants: Node strips types, so a mutant that only breaks a type still runs.
  disableTypeChecks: 'src/**/*.ts',
  ignorePatterns: ['reports', 'bench/results', '.data', 'examples/web/dist'],
  thresholds: { high: 90, low: 85, break: null },
};
