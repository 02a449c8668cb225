/**
 * `npm run mutate [-- group ...] [-- stryker options]`: runs Stryker once per group of
 * scripts/mutation-groups.ts (all of them, or the ones named), then prints each group's counts and
 * the score over all of them, from the incremental files in mutation/. Options that start with `-`
 * go to every Stryker run (`--force` tests every mutant again). A run that fails or is stopped ends
 * the list (its partial results are kept for the next run), and the table is printed all the same;
 * the exit code is then 1.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { groups } from './mutation-groups.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** A mutant's status in Stryker's JSON report (mutation-testing-report-schema). */
type Status = 'Killed' | 'Survived' | 'NoCoverage' | 'Timeout' | 'CompileError' | 'RuntimeError' | 'Ignored' | 'Pending';
type Report = { files: Record<string, { mutants: { status: Status }[] }> };
type Counts = Record<Status, number>;

function emptyCounts(): Counts {
  return { Killed: 0, Survived: 0, NoCoverage: 0, Timeout: 0, CompileError: 0, RuntimeError: 0, Ignored: 0, Pending: 0 };
}

function countsOf(report: Report): Counts {
  const counts = emptyCounts();
  for (const file of Object.values(report.files)) for (const mutant of file.mutants) counts[mutant.status] += 1;
  return counts;
}

/** Stryker's mutation score: detected (killed or timed out) of the valid mutants, NoCoverage included. */
function score(counts: Counts): number {
  const detected = counts.Killed + counts.Timeout;
  const valid = detected + counts.Survived + counts.NoCoverage;
  return valid === 0 ? 100 : (100 * detected) / valid;
}

function row(name: string, counts: Counts, seconds: number | null): string {
  const cells = [
    name.padEnd(9),
    `${score(counts).toFixed(2).padStart(6)}%`,
    String(counts.Killed).padStart(6),
    String(counts.Timeout).padStart(7),
    String(counts.Survived).padStart(8),
    String(counts.NoCoverage).padStart(10),
    String(counts.Ignored).padStart(7),
    seconds === null ? '' : `${Math.round(seconds / 60)} min`.padStart(7),
  ];
  return cells.join(' ');
}

function main(): number {
  const args = process.argv.slice(2);
  const options = args.filter((arg) => arg.startsWith('-'));
  const named = args.filter((arg) => !arg.startsWith('-'));
  const unknown = named.filter((name) => !(name in groups));
  if (unknown.length > 0) {
    console.error(`unknown group ${unknown.join(', ')}: the groups are ${Object.keys(groups).join(', ')}`);
    return 2;
  }
  const selected = named.length > 0 ? named : Object.keys(groups);
  // Ctrl-C reaches Stryker too, which saves what it tested and exits; this process stays to report.
  process.on('SIGINT', () => {});
  const times = new Map<string, number>();
  let failed = false;
  for (const name of selected) {
    console.log(`\n== mutation group ${name}: ${groups[name]?.mutate.join(' ')}`);
    const started = performance.now();
    const run = spawnSync('npx', ['stryker', 'run', ...options], {
      cwd: ROOT,
      stdio: 'inherit',
      env: { ...process.env, MUTATE_GROUP: name },
    });
    times.set(name, (performance.now() - started) / 1000);
    if (run.status !== 0) {
      // Stopped (Ctrl-C) or failed: what it tested is kept; the table below shows the last reports.
      console.error(`stryker did not finish group ${name} (exit ${run.status ?? run.signal})`);
      failed = true;
      break;
    }
  }
  console.log(`\n${['group'.padEnd(9), '  score', ' killed', 'timeout', 'survived', 'nocoverage', 'ignored', '   time'].join(' ')}`);
  const total = emptyCounts();
  for (const name of Object.keys(groups)) {
    // The incremental file: every mutant settled so far, by this run or recorded before it (committed).
    const path = `${ROOT}mutation/incremental-${name}.json`;
    if (!existsSync(path)) continue;
    const counts = countsOf(JSON.parse(readFileSync(path, 'utf8')) as Report);
    for (const status of Object.keys(total) as Status[]) total[status] += counts[status];
    console.log(row(name, counts, times.get(name) ?? null));
  }
  console.log(row('all', total, null));
  console.log(
    'Counts: mutation/incremental-<group>.json, what each group has settled (a group not run now, or stopped, shows what it had).',
  );
  console.log('Reports of the groups run to the end here: reports/mutation/<group>.html (open in a browser) and .json.');
  return failed ? 1 : 0;
}

process.exitCode = main();
