import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sleep } from './stats.ts';

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
const lifeline = pathToFileURL(fileURLToPath(new URL('../lifeline.ts', import.meta.url))).href;
const KEPT_LINES = 400;

export type Child = {
  readonly name: string;
  readonly pid: number;
  /** The last lines the process printed (stdout and stderr), for error messages. */
  tail(lines?: number): string;
  /** Resolves with the first line matching `pattern`, printed before or after the call. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Whether the process has exited (expectedly or not). */
  exited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null after a signal). */
  stop(graceMs?: number): Promise<number | null>;
};

/**
 * Runs `node [nodeFlags] <script> [args]` in the project root with exactly `env` (plus PATH), the
 * lifeline preloaded, and its stdin a pipe that only closes when this runner goes away.
 */
export function startNode(
  name: string,
  script: string,
  options: { args?: string[]; env?: Record<string, string>; nodeFlags?: string[] } = {},
): Child {
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), '--import', lifeline, script, ...(options.args ?? [])], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${script}`);
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = '';
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const line of parts) {
        if (line.length === 0) continue;
        lines.push(line);
        if (lines.length > KEPT_LINES) lines.shift();
        for (const waiter of [...waiters]) waiter(line);
      }
    });
  }
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    }),
  );
  return {
    name,
    pid: child.pid,
    tail: (count = 30) => lines.slice(-count).join('\n'),
    exited: () => exitCode !== undefined,
    waitForLine(pattern, timeoutMs) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(onLine);
        };
        const onLine = (line: string) => {
          if (!pattern.test(line)) return;
          finish();
          resolve(line);
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`${name}: no line matching ${pattern} within ${timeoutMs} ms; output:\n${lines.join('\n')}`));
        }, timeoutMs);
        waiters.add(onLine);
        void exited.then((code) => {
          if (!waiters.has(onLine)) return;
          finish();
          reject(new Error(`${name} exited (${code}) before printing ${pattern}; output:\n${lines.join('\n')}`));
        });
      });
    },
    async stop(graceMs = 10_000) {
      if (exitCode !== undefined) return exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `url` until it answers 200; fails early when `child` exits. */
export async function waitForHttp(url: string, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exited()) throw new Error(`${child.name} exited before ${url} answered; output:\n${child.tail()}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms; output:\n${child.tail()}`);
    await sleep(100);
  }
}

/** Resident set size of a process in KiB (Linux /proc). */
export function rssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match?.[1]) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}
