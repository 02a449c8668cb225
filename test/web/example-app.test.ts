import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page, WebSocketRoute } from 'playwright-core';
import { build } from 'vite';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serveStatic } from '../../examples/web/scripts/static-server.ts';
import type { StaticServer } from '../../examples/web/scripts/static-server.ts';
import { createLogger } from '../../src/logger.ts';
import { createChangeLog } from '../../src/pubsub/change-log.ts';
import { browserTestName, hasChromium, launchChromium } from '../support/browser.ts';
import type { TestBrowser } from '../support/browser.ts';
import { createTask, createTenant, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { subscribeWs, wsClient } from '../support/subscriptions.ts';
import { png } from '../tasks/image-fixtures.ts';

/**
 * The reference app of examples/web in Chromium, against a real gateway (PGlite, the simulator,
 * videos archived to a local store and served with Range), served from another origin as
 * `npm run example` serves it. Built once, in development mode: React's development build is the
 * one where StrictMode mounts, unmounts and mounts again.
 *
 * `UPDATE_SCREENSHOTS=1 npx vitest run test/web/example-app.test.ts` rewrites docs/screenshots/.
 */

const appDir = fileURLToPath(new URL('../../examples/web/', import.meta.url));
const screenshotDir = process.env.UPDATE_SCREENSHOTS === '1' ? fileURLToPath(new URL('../../docs/screenshots/', import.meta.url)) : null;

type Message = { id?: string; type: string; payload?: { variables?: Record<string, unknown>; data?: Record<string, unknown> } };
type Socket = { sent: Message[]; received: Message[]; page: WebSocketRoute; server: WebSocketRoute; closed: boolean };

/**
 * Every WebSocket the page opens to /graphql goes through here (Playwright's routeWebSocket): each
 * message is recorded and passed on, and the test can cut the connection, or hold new ones until
 * it lets them through, as a network would.
 */
class SocketLog {
  readonly sockets: Socket[] = [];
  private gate: { opened: Promise<void>; open: () => void } | null = null;
  private dropOn: ((message: Message) => boolean) | null = null;
  private waiters = new Set<() => void>();

  static async attach(page: Page): Promise<SocketLog> {
    const log = new SocketLog();
    await page.routeWebSocket(/\/graphql$/, (ws) => log.route(ws));
    return log;
  }

  private async route(ws: WebSocketRoute): Promise<void> {
    if (this.gate !== null) await this.gate.opened;
    const server = ws.connectToServer();
    const socket: Socket = { sent: [], received: [], page: ws, server, closed: false };
    this.sockets.push(socket);
    ws.onMessage((message) => {
      socket.sent.push(JSON.parse(String(message)) as Message);
      server.send(message);
      this.wake();
    });
    server.onMessage((message) => {
      const parsed = JSON.parse(String(message)) as Message;
      socket.received.push(parsed);
      ws.send(message);
      if (this.dropOn?.(parsed)) {
        this.dropOn = null;
        this.hold();
        void this.drop(socket);
      }
      this.wake();
    });
    ws.onClose((code, reason) => {
      socket.closed = true;
      void server.close({ code, reason });
      this.wake();
    });
    server.onClose((code, reason) => {
      socket.closed = true;
      void ws.close({ code, reason });
      this.wake();
    });
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Messages the page sent (`sent`) or received, of one type, across all its sockets. */
  messages(direction: 'sent' | 'received', type: string): Message[] {
    return this.sockets.flatMap((socket) => socket[direction].filter((message) => message.type === type));
  }

  /** New connections wait (the page sees a socket that does not open) until `release()`. */
  hold(): void {
    if (this.gate !== null) return;
    let open = () => {};
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    this.gate = { opened, open };
  }

  release(): void {
    this.gate?.open();
    this.gate = null;
  }

  /** Cuts the connection as a lost network does: the gateway's side closes, the page sees 1006. */
  async drop(socket: Socket): Promise<void> {
    socket.closed = true;
    await socket.server.close({ code: 1000, reason: 'test: network lost' });
    await socket.page.close({ code: 1006, reason: 'test: network lost' });
    this.wake();
  }

  /** From the moment `predicate` matches a message from the gateway (after passing it on): hold new connections and drop. */
  dropWhenReceived(predicate: (message: Message) => boolean): void {
    this.dropOn = predicate;
  }

  until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const test = () => {
        if (!check()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.sockets.map((s) => [s.sent, s.received]))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(test);
      };
      this.waiters.add(test);
      test();
    });
  }
}

let gateway: TestGateway;
let app: StaticServer;
let browser: TestBrowser;
let buildDir: string;
let dataDir: string;
const appConfig: { gatewayUrl?: string } = {};
const pages: Page[] = [];

beforeAll(async () => {
  if (!hasChromium) return;
  buildDir = mkdtempSync(join(tmpdir(), 'omni-example-build-'));
  dataDir = mkdtempSync(join(tmpdir(), 'omni-example-data-'));
  await build({
    root: appDir,
    mode: 'development',
    logLevel: 'warn',
    define: { 'process.env.NODE_ENV': JSON.stringify('development') },
    build: { outDir: buildDir, emptyOutDir: true, minify: false },
  });
  app = await serveStatic({ root: buildDir, port: 0, host: '127.0.0.1', config: appConfig });
  gateway = await startGateway({
    // Long enough between steps that a test can act on a task in flight, short enough to finish quickly.
    delays: { processingMs: 300, finishMs: 1500 },
    env: { VIDEO_STORE: 'local', DATA_DIR: dataDir, CORS_ORIGINS: app.url },
  });
  appConfig.gatewayUrl = gateway.url;
  browser = await launchChromium({ viewport: { width: 1280, height: 900 } });
}, 60_000);

afterEach(async () => {
  for (const page of pages.splice(0)) await page.close();
  // A closed page's socket is released by the gateway shortly after; the next test counts from zero.
  if (hasChromium) await expect.poll(() => gateway.app.services.watch.size(), { timeout: 5_000 }).toBe(0);
});

afterAll(async () => {
  await browser?.close();
  await gateway?.stop();
  await app?.close();
  for (const dir of [buildDir, dataDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** A new page, with the console errors and uncaught exceptions it shows, and how many documents it loaded. */
async function newPage(): Promise<{ page: Page; problems: string[]; navigations: () => number }> {
  const page = await browser.context.newPage();
  pages.push(page);
  const problems: string[] = [];
  let navigations = 0;
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('load', () => {
    navigations += 1;
  });
  return { page, problems, navigations: () => navigations };
}

/** The app with the key in the fragment, as `npm run example` links to it; resolves once live. */
async function openApp(page: Page, tenant: TestTenant, query = ''): Promise<void> {
  await page.goto(`${app.url}/${query}#key=${tenant.apiKey}`);
  await page.locator('[data-testid="connection"][data-state="live"]').waitFor();
}

async function screenshot(page: Page, name: string): Promise<void> {
  if (screenshotDir === null) return;
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`) });
}

const detailStatus = (page: Page) => page.locator('.task-detail [data-status]');

/** The page's feed (exposed on window in development builds): how often it was retained and subscribed. */
type FeedStats = { retains: number; subscribes: number; resumes: number; resyncs: number };
const feedStats = (page: Page) => page.evaluate(() => (window as unknown as { omniLiveFeed: { stats: FeedStats } }).omniLiveFeed.stats);

describe('the example app (examples/web) in Chromium', () => {
  it.skipIf(!hasChromium)(
    browserTestName("signs in with a key; after StrictMode's double mount the gateway holds exactly one live subscription"),
    async () => {
      const tenant = await createTenant(gateway, 'Strict Mode');
      const { page, problems } = await newPage();
      const sockets = await SocketLog.attach(page);
      await page.goto(app.url);
      await page.getByLabel('API key').fill(tenant.apiKey);
      await screenshot(page, 'sign-in');
      await page.getByRole('button', { name: 'Open' }).click();
      await page.locator('[data-testid="connection"][data-state="live"]').waitFor();
      await page.getByTestId('tenant').filter({ hasText: 'Strict Mode' }).waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem('omni-gateway.api-key'))).toBe(tenant.apiKey);

      // A task made elsewhere reaches the page through the subscription: it is live.
      const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      await page.locator(`.task-list tr[data-task-id="${task.id}"]`).waitFor();

      // StrictMode did mount the dashboard twice (retained, released, retained), yet the page
      // subscribed once, completed nothing, and the gateway holds one subscription.
      expect(await feedStats(page)).toMatchObject({ retains: 2, subscribes: 1 });
      expect(sockets.sockets).toHaveLength(1);
      expect(sockets.messages('sent', 'subscribe')).toHaveLength(1);
      expect(sockets.messages('sent', 'complete')).toHaveLength(0);
      expect(gateway.app.services.watch.size()).toBe(1);
      expect(problems).toEqual([]);
    },
  );

  it.skipIf(!hasChromium)(
    browserTestName('creates a task, shows its status live, and plays the stored video through its end after a seek (Range, 206)'),
    async () => {
      const tenant = await createTenant(gateway, 'Player');
      const { page, problems, navigations } = await newPage();
      const videoResponses: { status: number; range: string | null; contentRange: string | null }[] = [];
      page.on('response', async (response) => {
        if (!response.url().includes('/files/videos/')) return;
        videoResponses.push({
          status: response.status(),
          range: await response.request().headerValue('range'),
          contentRange: await response.headerValue('content-range'),
        });
      });
      await openApp(page, tenant);
      // Every status the detail view shows, in order, as the page changes it.
      await page.evaluate(() => {
        const seen: string[] = [];
        Object.assign(window, { seenStatuses: seen });
        new MutationObserver(() => {
          const status = document.querySelector('.task-detail [data-status]')?.getAttribute('data-status');
          if (status && seen.at(-1) !== status) seen.push(status);
        }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
      });

      await page.getByLabel('Prompt').fill('A red fox runs through fresh snow at dawn');
      await page.getByLabel('Aspect ratio').selectOption('RATIO_9_16');
      await page.getByRole('button', { name: 'Create video' }).click();
      await page.locator('.task-detail [data-status="SUCCEEDED"]').waitFor();
      await page.getByText('Stored by the gateway').waitFor();
      const seen = await page.evaluate(() => (window as unknown as { seenStatuses: string[] }).seenStatuses);
      expect(seen.at(-1)).toBe('SUCCEEDED');
      expect(
        seen.some((status) => ['PENDING', 'SUBMITTED', 'PROCESSING'].includes(status)),
        seen.join(' → '),
      ).toBe(true);
      await page.getByTestId('usage-succeeded').filter({ hasText: /^1$/ }).waitFor();

      const played = await page.getByTestId('player').evaluate(async (element) => {
        const video = element as HTMLVideoElement;
        video.muted = true;
        const once = (event: string) =>
          new Promise<void>((resolve, reject) => {
            video.addEventListener(event, () => resolve(), { once: true });
            video.addEventListener('error', () => reject(new Error(`media error ${video.error?.code}: ${video.error?.message}`)), {
              once: true,
            });
          });
        if (video.readyState < HTMLMediaElement.HAVE_METADATA) await once('loadedmetadata');
        const seeked = once('seeked');
        video.currentTime = video.duration - 1.5;
        await seeked;
        const ended = once('ended');
        await video.play();
        await ended;
        return { duration: video.duration, at: video.currentTime, ended: video.ended, width: video.videoWidth, height: video.videoHeight };
      });
      expect(played.duration).toBeCloseTo(5, 0);
      expect(played.ended).toBe(true);
      expect(played.at).toBeCloseTo(played.duration, 1);
      expect([played.width, played.height]).toEqual([180, 320]);
      // Every request of the player is a Range request answered 206. With preload="metadata" the
      // first one stops after the header; the seek towards the end asks from further in the file.
      expect(videoResponses.length).toBeGreaterThan(0);
      for (const response of videoResponses) {
        expect(response, JSON.stringify(videoResponses)).toMatchObject({ status: 206, range: expect.stringMatching(/^bytes=\d+-/) });
        const from = /^bytes=(\d+)-/.exec(response.range!)![1];
        expect(response.contentRange).toMatch(new RegExp(`^bytes ${from}-\\d+/\\d+$`));
      }
      // The seek towards the end asks from further in the file, unless the first answer already
      // brought the whole (small) file, which a busy browser may read to its end before seeking.
      const whole = (response: (typeof videoResponses)[number]) => /^bytes 0-(\d+)\/(\d+)$/.exec(response.contentRange ?? '');
      expect(
        videoResponses.some((response) => !response.range!.startsWith('bytes=0-')) ||
          videoResponses.some((response) => {
            const match = whole(response);
            return match !== null && Number(match[1]) + 1 === Number(match[2]);
          }),
        JSON.stringify(videoResponses),
      ).toBe(true);
      await screenshot(page, 'tasks-and-player');
      expect(navigations()).toBe(1);
      expect(problems).toEqual([]);
    },
  );

  it.skipIf(!hasChromium)(
    browserTestName('shows each InvalidInputError issue next to its field (an uploaded image sent as base64, an element id, the prompt)'),
    async () => {
      const tenant = await createTenant(gateway, 'Careless');
      const { page } = await newPage();
      const bodies: string[] = [];
      page.on('request', (request) => {
        if (request.method() === 'POST' && request.url().endsWith('/graphql')) bodies.push(request.postData() ?? '');
      });
      await openApp(page, tenant);
      await page.getByLabel('Prompt').fill('<<<image_2>>> waves from a balcony');
      await page.getByLabel('Reference image source').selectOption('file');
      await page.getByLabel('Reference image file').setInputFiles({ name: 'small.png', mimeType: 'image/png', buffer: png(120, 80) });
      await page.getByLabel('Element id').fill('not-a-number');
      await page.getByRole('button', { name: 'Create video' }).click();

      const issue = (field: string) => page.locator(`[data-field="${field}"] .issue`);
      await issue('referenceImage').filter({ hasText: 'image is 120x80 px; each side must be at least 300 px' }).waitFor();
      await issue('elementId').filter({ hasText: 'must be a non-empty string of digits' }).waitFor();
      await issue('prompt').filter({ hasText: 'prompt refers to <<<image_2>>>, but 1 image is given' }).waitFor();
      expect(await issue('mode').count()).toBe(0);
      expect(await issue('durationSeconds').count()).toBe(0);
      expect(await page.getByLabel('Element id').getAttribute('aria-invalid')).toBe('true');
      await screenshot(page, 'field-errors');

      const create = bodies.find((body) => body.includes('CreateOmniVideo'));
      expect(create, 'the create request').toBeDefined();
      const input = (JSON.parse(create!) as { variables: { input: { referenceImages: { base64: string }[] } } }).variables.input;
      expect(input.referenceImages[0]?.base64).toBe(`data:image/png;base64,${png(120, 80).toString('base64')}`);
      const listed = await gateway.graphql<{ omniTasks: { edges: unknown[] } }>(
        '{ omniTasks(first: 5) { edges { cursor } } }',
        {},
        tenant.apiKey,
      );
      expect(expectData(listed).omniTasks.edges).toEqual([]);
    },
  );

  it.skipIf(!hasChromium)(browserTestName('pages with first/after and back with last/before, and filters by status'), async () => {
    const tenant = await createTenant(gateway, 'Pager');
    for (let n = 1; n <= 25; n += 1) {
      const failing = n % 8 === 0;
      await createTask(gateway, tenant, {
        ...TEXT_TO_VIDEO,
        prompt: `Task ${String(n).padStart(2, '0')}${failing ? ' [[fail:no luck]]' : ''}`,
      });
    }
    const all = expectData(
      await gateway.graphql<{ omniTasks: { edges: { node: { id: string } }[] } }>(
        '{ omniTasks(first: 100) { edges { node { id } } } }',
        {},
        tenant.apiKey,
      ),
    ).omniTasks.edges.map((edge) => edge.node.id);
    expect(all).toHaveLength(25);

    const { page, problems } = await newPage();
    const pageVariables: Record<string, unknown>[] = [];
    page.on('request', (request) => {
      const body = request.method() === 'POST' ? request.postData() : null;
      if (body?.includes('query TaskPage')) pageVariables.push((JSON.parse(body) as { variables: Record<string, unknown> }).variables);
    });
    await openApp(page, tenant);
    const showsRows = (ids: string[]) =>
      page.waitForFunction(
        (expected) =>
          [...document.querySelectorAll<HTMLElement>('.task-list tbody tr')].map((row) => row.dataset.taskId).join() === expected.join(),
        ids,
      );
    const button = (name: string) => page.getByRole('button', { name });

    await showsRows(all.slice(0, 10));
    expect(await button('← Newer').isDisabled()).toBe(true);
    await button('Older →').click();
    await showsRows(all.slice(10, 20));
    await button('Older →').click();
    await showsRows(all.slice(20, 25));
    await page.getByTestId('page-number').filter({ hasText: 'Page 3' }).waitFor();
    expect(await button('Older →').isDisabled()).toBe(true);
    await button('← Newer').click();
    await showsRows(all.slice(10, 20));
    await button('← Newer').click();
    await showsRows(all.slice(0, 10));
    await page.getByTestId('page-number').filter({ hasText: 'Page 1' }).waitFor();
    await screenshot(page, 'task-list');
    expect(pageVariables.map(({ filter: _filter, ...paging }) => Object.keys(paging).sort().join())).toEqual([
      'first',
      'after,first',
      'after,first',
      'before,last',
      'first',
    ]);

    // The failing tasks (8, 16, 24) appear under the filter as they fail: the feed's events make
    // the first page read again.
    await page.getByLabel('Status filter').selectOption('FAILED');
    const failed = [all[1]!, all[9]!, all[17]!];
    await showsRows(failed);
    expect(
      await page.locator('.task-list tbody [data-status]').evaluateAll((badges) => badges.map((b) => b.getAttribute('data-status'))),
    ).toEqual(['FAILED', 'FAILED', 'FAILED']);
    expect(pageVariables.at(-1)).toMatchObject({ first: 10, filter: { status: ['FAILED'] } });
    expect(problems).toEqual([]);
  });

  it.skipIf(!hasChromium)(
    browserTestName(
      'WebSocket lost mid-task: the app reconnects, resumes with after: its last changeCursor, and shows the final state without a reload',
    ),
    async () => {
      const tenant = await createTenant(gateway, 'Unlucky Network');
      const { page, navigations } = await newPage();
      const sockets = await SocketLog.attach(page);
      await openApp(page, tenant);
      await page.evaluate(() => Object.assign(window, { sameDocument: true }));

      // The connection dies right after the page heard that its task was submitted.
      sockets.dropWhenReceived(
        (message) => (message.payload?.data?.omniTaskUpdated as { status?: string } | undefined)?.status === 'SUBMITTED',
      );
      await page.getByLabel('Prompt').fill('A lighthouse in a storm');
      await page.getByRole('button', { name: 'Create video' }).click();
      await page.locator('[data-testid="connection"][data-state="reconnecting"]').waitFor();
      const taskId = (await page.locator('.task-detail').getAttribute('data-task-id'))!;
      const lastSeen = sockets.messages('received', 'next').at(-1)?.payload?.data?.omniTaskUpdated as {
        changeCursor: string;
        status: string;
      };
      expect(lastSeen.status).toBe('SUBMITTED');

      // The task finishes while the page is away.
      const client = wsClient(gateway.url, tenant.apiKey);
      try {
        const watch = await subscribeWs(client, 'subscription ($id: ID) { omniTaskUpdated(id: $id) { status } }', { id: taskId });
        await watch.collector.untilDone();
        expect(watch.collector.items.at(-1)?.data?.omniTaskUpdated.status).toBe('SUCCEEDED');
      } finally {
        await client.dispose();
      }
      expect(await detailStatus(page).getAttribute('data-status')).not.toBe('SUCCEEDED');

      sockets.release();
      await page.locator('.task-detail [data-status="SUCCEEDED"]').waitFor();
      await page.locator(`.task-list tr[data-task-id="${taskId}"] [data-status="SUCCEEDED"]`).waitFor();
      await page.locator('[data-testid="connection"][data-state="live"]').waitFor();

      const subscribes = sockets.messages('sent', 'subscribe');
      expect(subscribes.map((message) => message.payload?.variables)).toEqual([{}, { after: lastSeen.changeCursor }]);
      expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
      expect(navigations()).toBe(1);
      await expect.poll(() => gateway.app.services.watch.size()).toBe(1);
    },
  );

  it.skipIf(!hasChromium)(
    browserTestName('a resume cursor the change log no longer keeps (CURSOR_EXPIRED): the app lists again and subscribes without after'),
    async () => {
      const tenant = await createTenant(gateway, 'Long Weekend');
      const first = await createTask(gateway, tenant, TEXT_TO_VIDEO);
      const { page } = await newPage();
      const sockets = await SocketLog.attach(page);
      await openApp(page, tenant);
      // Wait until the page has a cursor: an event of the first task.
      await page.locator(`.task-list tr[data-task-id="${first.id}"] [data-status="SUCCEEDED"]`).waitFor();
      await sockets.until(() => sockets.messages('received', 'next').length > 0, 'an event');

      sockets.hold();
      await sockets.drop(sockets.sockets[0]!);
      await page.locator('[data-testid="connection"][data-state="reconnecting"]').waitFor();
      const meanwhile = await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, prompt: 'Made while the page was away' });
      // Everything in the log is pruned, as the retention job does after CHANGE_LOG_RETENTION_HOURS.
      const log = await createChangeLog(gateway.database, createLogger('silent'));
      try {
        expect(await log.prune(0)).toBeGreaterThan(0);
      } finally {
        await log.close();
      }
      sockets.release();

      await page.locator(`.task-list tr[data-task-id="${meanwhile.id}"]`).waitFor();
      await page.locator('[data-testid="connection"][data-state="live"]').waitFor();
      const variables = sockets.messages('sent', 'subscribe').map((message) => message.payload?.variables);
      expect(variables).toHaveLength(3);
      expect(variables[1]).toHaveProperty('after');
      expect(variables[2]).toEqual({});
      expect(await feedStats(page)).toMatchObject({ resyncs: 1 });
    },
  );

  it.skipIf(!hasChromium)(browserTestName('follows tasks live over SSE too (?transport=sse), without a WebSocket'), async () => {
    const tenant = await createTenant(gateway, 'Streamer');
    const { page, problems } = await newPage();
    const sockets = await SocketLog.attach(page);
    await openApp(page, tenant, '?transport=sse');
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    await page.locator(`.task-list tr[data-task-id="${task.id}"] [data-status="SUCCEEDED"]`).waitFor();
    expect(sockets.sockets).toHaveLength(0);
    expect(problems).toEqual([]);
  });

  it.skipIf(!hasChromium)(browserTestName('a refused key brings back the key form, saying so'), async () => {
    const { page } = await newPage();
    await page.goto(`${app.url}/#key=og_not-a-key`);
    await page.getByText('The gateway refused that key').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('omni-gateway.api-key'))).toBeNull();
  });
});
