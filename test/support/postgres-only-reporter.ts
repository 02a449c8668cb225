import type { Reporter, TestModule, Vitest } from 'vitest/node';

/** The suite's own tag for PostgreSQL-only tests (POSTGRES_ONLY in test/support/database.ts). */
const TAG = 'postgres';
const RUN_THEM = 'DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm test';

/**
 * Says at the end of a run how many PostgreSQL-only tests it skipped (a run without DATABASE_URL
 * skips them all) and how to run them. It counts the tests of this run, tagged `postgres`, whose
 * result is skipped.
 */
export default class PostgresOnlyReporter implements Reporter {
  private vitest: Vitest | null = null;

  onInit(vitest: Vitest): void {
    this.vitest = vitest;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let tagged = 0;
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        if (!test.tags.includes(TAG)) continue;
        tagged += 1;
        if (test.result().state === 'skipped') skipped += 1;
      }
    }
    if (tagged === 0) return;
    const line =
      skipped === 0
        ? `PostgreSQL-only tests: all ${tagged} ran.`
        : `PostgreSQL-only tests: ${skipped} of ${tagged} SKIPPED (no DATABASE_URL). Run them with: ${RUN_THEM}`;
    (this.vitest?.logger ?? console).log(`\n ${line}\n`);
  }
}
