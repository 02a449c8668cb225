/**
 * `npm run example`: builds the app, starts the gateway (embedded PGlite, the upstream simulator,
 * the sandbox tenant of its first start) and serves the app on another origin, which the gateway
 * allows with CORS_ORIGINS. Prints the app's URL with the sandbox key; Ctrl-C stops both.
 *
 * Settings (all optional): PORT (gateway, 4000), EXAMPLE_PORT (app, 5173), EXAMPLE_HOST
 * (127.0.0.1), EXAMPLE_DATA_DIR (examples/web/.data: the gateway's DATA_DIR), LOG_LEVEL. Port 0
 * picks free ports. COMETAPI_KEY and DATABASE_URL are ignored: the example is the sandbox.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { serveStatic } from './static-server.ts';

const appDir = fileURLToPath(new URL('..', import.meta.url));
const repoRoot = resolve(appDir, '../..');
const env = process.env;
const host = env.EXAMPLE_HOST || '127.0.0.1';
const dataDir = resolve(env.EXAMPLE_DATA_DIR || join(appDir, '.data'));
const keyFile = join(dataDir, 'example-sandbox-key');

function fail(message: string): never {
  console.error(`example: ${message}`);
  process.exit(1);
}

await build({ root: appDir, logLevel: 'warn' });
const config: { gatewayUrl?: string } = {};
const app = await serveStatic({ root: join(appDir, 'dist'), port: Number(env.EXAMPLE_PORT || 5173), host, config }).catch((error: Error) =>
  fail(`cannot serve the app: ${error.message} (set EXAMPLE_PORT)`),
);
const appPort = new URL(app.url).port;

mkdirSync(dataDir, { recursive: true });
const { COMETAPI_KEY: _upstreamKey, DATABASE_URL: _databaseUrl, ...inherited } = env;
const gateway = spawn(process.execPath, [join(repoRoot, 'src/main.ts')], {
  cwd: repoRoot,
  env: {
    ...inherited,
    PORT: env.PORT || '4000',
    HOST: host,
    DATA_DIR: dataDir,
    LOG_LEVEL: env.LOG_LEVEL || 'info',
    CORS_ORIGINS: [app.url, `http://localhost:${appPort}`].join(','),
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
gateway.stderr.pipe(process.stderr);

/** The gateway's log is JSON lines: warnings and worse are shown; two lines are read for their facts. */
type LogLine = { level?: number; msg?: string; url?: string; graphiql?: string };
let gatewayUrl: string | null = null;
let printedKey: string | null = null;
let buffered = '';
gateway.stdout.setEncoding('utf8').on('data', (chunk: string) => {
  buffered += chunk;
  const lines = buffered.split('\n');
  buffered = lines.pop() ?? '';
  for (const line of lines) onGatewayLine(line);
});

function onGatewayLine(line: string): void {
  const banner = /^\s+(og_\S+)\s*$/.exec(line);
  if (banner?.[1] !== undefined) {
    printedKey = banner[1];
    return;
  }
  let entry: LogLine;
  try {
    entry = JSON.parse(line) as LogLine;
  } catch {
    return; // the rest of the sandbox banner: the summary below says it again
  }
  if (entry.msg?.startsWith('omni gateway listening on') && entry.url !== undefined) gatewayUrl = entry.url;
  else if (entry.graphiql !== undefined) ready(entry.graphiql);
  else if ((entry.level ?? 0) >= 40) console.error(`gateway: ${entry.msg ?? line}`);
}

/** A path as the user would type it from here: relative inside the working directory, else absolute. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function sandboxKey(): string | null {
  if (printedKey !== null) {
    // The gateway keeps only the key's hash; the example keeps the key itself, for the next start.
    writeFileSync(keyFile, `${printedKey}\n`, { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    return printedKey;
  }
  return existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : null;
}

function ready(graphiql: string): void {
  if (gatewayUrl === null) fail('the gateway did not say where it listens');
  config.gatewayUrl = gatewayUrl;
  const key = sandboxKey();
  const where = shown(dataDir);
  console.log(
    [
      '',
      'Omni Gateway example',
      '',
      key === null
        ? `  app:      ${app.url}/  (no sandbox key is known for ${where}: delete that folder to start over)`
        : `  app:      ${app.url}/#key=${key}`,
      `  gateway:  ${gatewayUrl} (GraphiQL: ${graphiql}; CORS allows the app's origin)`,
      key === null ? '' : `  sandbox API key: ${key}  (kept in ${shown(keyFile)})`,
      `  data:     ${where} (embedded PGlite, stored videos); upstream: the built-in simulator`,
      '',
      'Ctrl-C stops the gateway and the app.',
      '',
    ].join('\n'),
  );
}

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  gateway.kill('SIGTERM');
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
gateway.on('exit', (code, signal) => {
  void app.close().then(() => {
    if (!stopping) console.error(`example: the gateway stopped (${signal ?? `exit code ${code}`})`);
    process.exit(stopping ? 0 : (code ?? 1));
  });
});
