import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const mainFile = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

export type GatewayProcess = {
  child: ChildProcess;
  /** Every line the process printed so far (stdout and stderr). */
  lines: string[];
  /** Resolves with the first line (past or future) matching `pattern`; rejects on timeout or exit. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
};

/** Runs `node src/main.ts` with exactly `env` (plus PATH), as `npm start` would. */
export function spawnGateway(env: Record<string, string>): GatewayProcess {
  return spawnScript(mainFile, env);
}

/** Runs `node <file>` from the project's root with exactly `env` (plus PATH), collecting what it prints. */
export function spawnScript(file: string, env: Record<string, string>): GatewayProcess {
  const child = spawn(process.execPath, [file], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      lines.push(...parts.filter((line) => line.length > 0));
      for (const wake of waiters) wake();
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    waitForLine(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find((candidate) => pattern.test(candidate));
          if (line !== undefined) {
            finish();
            resolve(line);
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${lines.join('\n')}`));
        }, timeoutMs);
        const onExit = (code: number | null) => {
          finish();
          reject(new Error(`process exited (${code}) before printing ${pattern}; output:\n${lines.join('\n')}`));
        };
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
        };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The URL a started gateway printed in its "listening" log line. */
export async function listeningUrl(gateway: GatewayProcess): Promise<string> {
  const line = await gateway.waitForLine(/omni gateway listening/);
  return (JSON.parse(line) as { url: string }).url;
}

/** A port that was free a moment ago on 127.0.0.1 (for a process that cannot take port 0). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
