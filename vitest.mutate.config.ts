import { defineConfig, mergeConfig } from 'vitest/config';
import { groups } from './scripts/mutation-groups.ts';
import base from './vitest.config.ts';

/**
 * The test files `npm run mutate` (StrykerJS, stryker.config.mjs) runs against each mutant: the
 * whole suite but the files that cannot see a mutant, because the code they test runs in child
 * processes (coverage and the active mutant live in the test's own process) or in a browser, or
 * that test only the simulator and the upstream client, or that are bound in time. Same aliases
 * (graphql) as vitest.config.ts.
 */
const config = mergeConfig(
  base,
  defineConfig({
    test: {
      exclude: [
        // Chromium and a built example app.
        'test/web/**',
        // Gateways in child processes.
        'test/main.test.ts',
        'test/tenants/sandbox.test.ts',
        'test/reliability/crash-recovery.test.ts',
        'test/reliability/database-outage.test.ts',
        'test/archive/restart.test.ts',
        // Load tests bound in time (200 concurrent creates, a callback flood): instrumented code on two
        // shared cores misses their deadlines; the mutated modules are covered by the functional tests.
        'test/reliability/upstream-faults.test.ts',
        'test/security/callback-flood.test.ts',
        // Drives the reconciler by hand (tick() must find the task) while the background one runs every
        // 50 ms: under mutation-run load the background one gets there first and the count is 0.
        'test/tasks/late-success.test.ts',
        // Streams a 200 MB video through a child process; downloads are outside the mutated modules.
        'test/storage/download-memory.test.ts',
        // The simulator and the upstream client, outside the mutated modules.
        'test/simulator/**',
        'test/kling/**',
      ],
      // Stryker reports for itself; the postgres-only summary line is noise there.
      reporters: ['default'],
    },
  }),
);

// The test files of one run: MUTATE_TESTS=test/a.test.ts,test/b.test.ts narrows it by hand, else
// MUTATE_GROUP (set by `npm run mutate`) names the group of scripts/mutation-groups.ts whose tests to run. A
// mutant Stryker cannot tie to single tests (code that a beforeAll ran) runs every selected file.
const selected = process.env.MUTATE_TESTS?.split(',') ?? (process.env.MUTATE_GROUP ? groups[process.env.MUTATE_GROUP]?.tests : undefined);
if (selected) config.test = { ...config.test, include: selected };

export default config;
