// @ts-check
/**
 * Mutation testing of the modules that hold money, tenancy, keys and state. See "Mutation testing"
 * in README.md.
 *
 * `npm run mutate` (scripts/mutate.ts) runs Stryker once per group of scripts/mutation-groups.ts,
 * with MUTATE_GROUP set: each group's modules are tried against the test files aimed at them, not
 * against every test that happens to pass through them (a create or a callback passes through most
 * of them, and running all of those for every mutant would take a day on two cores). A mutant only
 * some other test file would notice is reported Survived: the score is a lower bound. Reports: reports/mutation/<group>.html
 * and .json (git-ignored). Incremental results: mutation/incremental-<group>.json, committed, so a
 * rerun on any checkout tests only the mutants whose code or covering tests changed since the
 * results were recorded, and a long run stopped with Ctrl-C goes on from there.
 *
 * `npx stryker run` without MUTATE_GROUP tries the whole scope against the whole suite (tens of
 * hours here); with `--mutate` and MUTATE_TESTS (vitest.mutate.config.ts) it makes a narrowed run.
 */

import { groups } from './scripts/mutation-groups.ts';

const groupName = process.env.MUTATE_GROUP;
const group = groupName === undefined ? undefined : groups[groupName];
if (groupName !== undefined && group === undefined) {
  throw new Error(`MUTATE_GROUP=${groupName}: no such group (${Object.keys(groups).join(', ')})`);
}
const reportName = groupName ?? 'all';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  // Vitest's own config (graphql alias included), narrowed to the test files that can see a mutant.
  vitest: { configFile: 'vitest.mutate.config.ts' },
  // Each mutant runs only the tests that reached its code in the first, instrumented run.
  coverageAnalysis: 'perTest',
  mutate: group?.mutate ?? Object.values(groups).flatMap((each) => each.mutate),
  // Code run while a test file loads or in its beforeAll (a gateway being built) has no test of its
  // own: Stryker would run every test file for each such "static" mutant (about 60% of them, and
  // 99% of the time). They are reported as Ignored, outside the score.
  ignoreStatic: true,
  incremental: true,
  incrementalFile: `mutation/incremental-${reportName}.json`,
  reporters: ['html', 'clear-text', 'progress', 'json'],
  htmlReporter: { fileName: `reports/mutation/${reportName}.html` },
  jsonReporter: { fileName: `reports/mutation/${reportName}.json` },
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
  ignorePatterns: ['reports', 'mutation', 'bench/results', '.data', 'examples/web/dist'],
  thresholds: { high: 90, low: 85, break: null },
};
