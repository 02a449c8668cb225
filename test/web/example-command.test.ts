import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnScript } from '../support/process.ts';
import type { GatewayProcess } from '../support/process.ts';

const serveScript = fileURLToPath(new URL('../../examples/web/scripts/serve.ts', import.meta.url));

/** `npm run example` as a person runs it, on free ports and a fresh data folder. */
function runExample(dataDir: string): GatewayProcess {
  return spawnScript(serveScript, { PORT: '0', EXAMPLE_PORT: '0', EXAMPLE_DATA_DIR: dataDir });
}

async function printed(example: GatewayProcess) {
  const appLine = await example.waitForLine(/^\s+app:\s+http/, 60_000);
  const gatewayLine = await example.waitForLine(/^\s+gateway:\s+http/);
  const appUrl = new URL(/(http\S+)/.exec(appLine)![1]!);
  return {
    appOrigin: appUrl.origin,
    key: new URLSearchParams(appUrl.hash.slice(1)).get('key'),
    gatewayUrl: /(http\S+)/.exec(gatewayLine)![1]!,
  };
}

describe('npm run example', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'omni-example-'));
  const running: GatewayProcess[] = [];
  afterAll(async () => {
    for (const example of running) await example.kill();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('builds the app, starts the gateway with its sandbox tenant, serves the app on another origin (CORS), and stops on SIGTERM', {
    timeout: 90_000,
  }, async () => {
    const example = runExample(dataDir);
    running.push(example);
    const { appOrigin, key, gatewayUrl } = await printed(example);
    expect(key).toMatch(/^og_/);

    const page = await fetch(`${appOrigin}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('<div id="root"></div>');
    const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect((await fetch(`${appOrigin}/${script}`)).status).toBe(200);
    expect(await (await fetch(`${appOrigin}/config.json`)).json()).toEqual({ gatewayUrl });

    // What the browser does from the app's origin: a preflight, then the query with the key.
    const preflight = await fetch(`${gatewayUrl}/graphql`, {
      method: 'OPTIONS',
      headers: {
        origin: appOrigin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBe(appOrigin);
    const response = await fetch(`${gatewayUrl}/graphql`, {
      method: 'POST',
      headers: { origin: appOrigin, 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: '{ viewer { tenant { name } } }' }),
    });
    expect(response.headers.get('access-control-allow-origin')).toBe(appOrigin);
    expect(await response.json()).toEqual({ data: { viewer: { tenant: { name: 'Sandbox' } } } });

    const keyFile = join(dataDir, 'example-sandbox-key');
    expect(readFileSync(keyFile, 'utf8').trim()).toBe(key);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(await example.kill('SIGTERM')).toBe(0);
  });

  it('a second start on the same data finds the sandbox key it kept (the gateway prints it only once)', { timeout: 90_000 }, async () => {
    const first = readFileSync(join(dataDir, 'example-sandbox-key'), 'utf8').trim();
    const example = runExample(dataDir);
    running.push(example);
    const { key, gatewayUrl } = await printed(example);
    expect(key).toBe(first);
    expect(example.lines.some((line) => line.includes('Sandbox tenant "Sandbox" created'))).toBe(false);
    const response = await fetch(`${gatewayUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: '{ viewer { tenant { name } } }' }),
    });
    expect(await response.json()).toEqual({ data: { viewer: { tenant: { name: 'Sandbox' } } } });
    expect(await example.kill('SIGTERM')).toBe(0);
  });
});
