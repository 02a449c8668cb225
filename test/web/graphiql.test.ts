import { gunzipSync } from 'node:zlib';
import type { Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserTestName, hasChromium, launchChromium } from '../support/browser.ts';
import type { TestBrowser } from '../support/browser.ts';
import { createTenant } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';

let gateway: TestGateway;
let tenant: TestTenant;
const tenantName = `GraphiQL Tenant ${process.pid}`;

beforeAll(async () => {
  gateway = await startGateway();
  tenant = await createTenant(gateway, tenantName);
});
afterAll(() => gateway.stop());

/** The GraphiQL page as a browser asks for it: GET, Accept text/html, no Authorization. */
const getPage = () => fetch(`${gateway.url}/graphql`, { headers: { accept: 'text/html,application/xhtml+xml' } });

describe('the GraphiQL page over HTTP', () => {
  it('is served without a key, names only assets of the gateway, and carries the schema', async () => {
    const response = await getPage();
    const html = await response.text();
    expect(response.status, html.slice(0, 500)).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(response.headers.get('content-security-policy')).toContain("default-src 'self'");
    const references = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(references.sort()).toEqual(['graphiql/assets/favicon.ico', 'graphiql/assets/graphiql.css', 'graphiql/assets/graphiql.js']);
    // Booleans, so that a failure does not print the whole page with its 60 KB schema.
    expect(/\b(?:src|href)=["']?(?:https?:)?\/\//.test(html), 'an absolute asset URL').toBe(false);
    expect(html.includes('"schema":{"__schema":'), 'the schema in the page').toBe(true);
    expect(html.includes('"query":"{ viewer { tenant { name } } }"'), 'the default query').toBe(true);
    expect(html.includes('Bearer \\u003cyour API key>'), 'the Authorization header template').toBe(true);
  });

  it('serves every asset, revalidates by ETag and gzips for browsers that accept it', async () => {
    for (const name of ['graphiql.js', 'graphiql.css', 'editor.worker.js', 'json.worker.js', 'graphql.worker.js', 'favicon.ico']) {
      const plain = await fetch(`${gateway.url}/graphiql/assets/${name}`, { headers: { 'accept-encoding': 'identity' } });
      expect(plain.status, name).toBe(200);
      const bytes = Buffer.from(await plain.arrayBuffer());
      expect(bytes.length, name).toBeGreaterThan(1000);
      const etag = plain.headers.get('etag');
      expect(etag, name).toMatch(/^"[\w-]+"$/);
      const again = await fetch(`${gateway.url}/graphiql/assets/${name}`, { headers: { 'if-none-match': etag ?? '' } });
      expect(again.status, name).toBe(304);
    }
    // fetch() would decompress on its own; node:http's raw bytes show the encoding.
    const { request } = await import('node:http');
    const gzipped = await new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
      request(`${gateway.url}/graphiql/assets/graphiql.css`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      })
        .on('error', reject)
        .end();
    });
    expect(gzipped.encoding).toBe('gzip');
    const css = await (await fetch(`${gateway.url}/graphiql/assets/graphiql.css`, { headers: { 'accept-encoding': 'identity' } })).text();
    expect(gunzipSync(gzipped.body).toString('utf8')).toBe(css);
    expect((await fetch(`${gateway.url}/graphiql/assets/../../package.json`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/graphiql/assets/constructor`)).status).toBe(404);
  });
});

describe('GraphiQL in a browser', () => {
  const name = browserTestName('renders with every request kept on the gateway, and runs { viewer { tenant { name } } } with a tenant key');

  let browser: TestBrowser | null = null;
  afterAll(() => browser?.close());

  it.skipIf(!hasChromium)(name, { timeout: 90_000 }, async () => {
    browser = await launchChromium();
    const { context } = browser;
    const origin = new URL(gateway.url).origin;
    const aborted: string[] = [];
    const operations: string[] = [];
    await context.route('**/*', (route) => {
      const request = route.request();
      if (new URL(request.url()).origin !== origin) {
        aborted.push(request.url());
        return route.abort();
      }
      if (request.method() === 'POST') operations.push(request.postData() ?? '');
      return route.continue();
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

    /** Waits for what the page should show; a timeout names what the page tried and what it logged. */
    const shows = async (locator: Locator, what: string) => {
      try {
        await locator.waitFor({ timeout: 20_000 });
      } catch (error) {
        const seen = { aborted, problems, body: ((await page.locator('body').textContent()) ?? '').slice(0, 500) };
        throw new Error(`GraphiQL never showed ${what}: ${String(error)}\n${JSON.stringify(seen, null, 2)}`);
      }
    };

    const response = await page.goto(`${gateway.url}/graphql`);
    expect(response?.status()).toBe(200);
    const queryEditor = page.locator('.graphiql-query-editor .monaco-editor');
    await shows(queryEditor.filter({ hasText: '{ viewer { tenant { name } } }' }), 'the default query');
    const headersEditor = page.locator('.graphiql-editor-tool .monaco-editor').last();
    await shows(headersEditor.filter({ hasText: 'Bearer <your API key>' }), 'the Authorization template');

    // As a person would: copy the key, select the placeholder headers, paste.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    await page.evaluate((text) => navigator.clipboard.writeText(text), JSON.stringify({ Authorization: `Bearer ${tenant.apiKey}` }));
    await headersEditor.click();
    await page.keyboard.press('ControlOrMeta+KeyA');
    await page.keyboard.press('ControlOrMeta+KeyV');
    await page.locator('.graphiql-execute-button').click();
    await shows(page.locator('.graphiql-response', { hasText: tenantName }), "the tenant's name in the result");
    expect(await page.locator('.graphiql-response').textContent()).not.toContain('errors');

    // The schema came with the page: the docs know it, and no introspection query was sent.
    await page.locator('[aria-label="Show Documentation Explorer"]').click();
    await shows(page.locator('.graphiql-doc-explorer', { hasText: 'CreateOmniVideoInput' }), 'the schema in the docs');
    expect(operations.some((body) => body.includes('__schema'))).toBe(false);
    expect(operations.length).toBeGreaterThanOrEqual(1);

    expect(aborted, 'requests to another host').toEqual([]);
    expect(problems, 'console errors').toEqual([]);
  });
});
