/*
 * Preloaded with `node --import` into every process the benchmark starts. The runner holds a pipe
 * open on our stdin; when the runner goes away, however it died (even SIGKILL), the pipe reaches
 * end-of-file and we stop as if sent SIGTERM, so no benchmark process outlives its runner.
 */
const stdin = process.stdin as typeof process.stdin & { unref?: () => void };

function stop(): void {
  // A graceful stop that hangs must not keep an orphan alive either.
  setTimeout(() => process.exit(1), 15_000).unref();
  process.kill(process.pid, 'SIGTERM');
}

stdin.once('end', stop);
stdin.once('error', stop);
stdin.resume();
// Only a watch: stdin must not keep a process alive that would otherwise exit.
stdin.unref?.();
