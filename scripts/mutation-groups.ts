/**
 * The groups `npm run mutate` (scripts/mutate.ts) runs Stryker over, one run each: the modules that
 * hold money, tenancy, keys and state, each tried against the test files aimed at it. Read by
 * stryker.config.mjs and vitest.mutate.config.ts through MUTATE_GROUP.
 */
export type MutationGroup = {
  /** Stryker's `mutate` globs. */
  mutate: string[];
  /** The test files run against each mutant (vitest `include` globs). */
  tests: string[];
};

export const groups: Record<string, MutationGroup> = {
  keys: {
    mutate: ['src/auth/*.ts', 'src/webhooks/tokens.ts', 'src/storage/signed-url.ts'],
    tests: [
      'test/tenants/auth.test.ts',
      'test/tenants/api-keys.test.ts',
      'test/tenants/revocation.test.ts',
      'test/tenants/key-sessions.test.ts',
      'test/security/failure-throttle.test.ts',
      'test/security/rate-limits.test.ts',
      'test/security/authenticate-first.test.ts',
      'test/security/protocol-conformance.test.ts',
      'test/hardening/limits.test.ts',
      'test/hardening/operations.test.ts',
      'test/http/bearer.test.ts',
      'test/webhooks/receiver.test.ts',
      'test/storage/signed-url.test.ts',
      'test/storage/file-route.test.ts',
    ],
  },
  metering: {
    mutate: ['src/metering/*.ts'],
    tests: [
      'test/metering/*.test.ts',
      'test/tenants/auth.test.ts',
      'test/scheduling/cancel-estimate.test.ts',
      'test/security/isolation-matrix.test.ts',
      'test/hardening/tracing.test.ts',
    ],
  },
  tasks: {
    mutate: ['src/tasks/state.ts', 'src/tasks/commands.ts', 'src/tasks/create-input.ts'],
    tests: [
      'test/tasks/*.test.ts',
      'test/scheduling/*.test.ts',
      // A result's archive copy is a new version of the task (state.ts, recordArchive).
      'test/archive/*.test.ts',
      'test/reliability/create-lease.test.ts',
      'test/reliability/webhook-crash.test.ts',
      'test/webhooks/receiver.test.ts',
      'test/webhooks/callback-hints.test.ts',
      'test/security/hostile-input.test.ts',
      'test/security/isolation-matrix.test.ts',
    ],
  },
  live: {
    mutate: ['src/tasks/watch.ts', 'src/pubsub/change-log.ts'],
    tests: [
      'test/live/*.test.ts',
      'test/pubsub/*.test.ts',
      'test/webhooks/outbound.test.ts',
      'test/webhooks/outbound-instances.test.ts',
      'test/hardening/limits.test.ts',
      'test/security/isolation-matrix.test.ts',
      'test/security/protocol-conformance.test.ts',
    ],
  },
};
