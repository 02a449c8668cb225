import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
};

/**
 * Scripts and styles only from this origin; GraphQL (HTTP, SSE, WebSocket) and videos from the
 * gateway, wherever it is; images the user picks are read as data: URLs.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self' http: https: ws: wss:",
  "media-src 'self' http: https:",
  "frame-ancestors 'none'",
].join('; ');

export type StaticServer = {
  /** e.g. http://127.0.0.1:5173 */
  url: string;
  close(): Promise<void>;
};

export type StaticServerOptions = {
  /** The built app (vite build's outDir). */
  root: string;
  port: number;
  host: string;
  /** Served as /config.json: how the app finds the gateway. Read at each request, so it may be filled in later. */
  config: { gatewayUrl?: string };
};

/** A small static file server for the built app, with the app's config.json beside it. */
export async function serveStatic(options: StaticServerOptions): Promise<StaticServer> {
  const root = resolve(options.root);
  const server = createServer((req, res) => {
    handle(root, options.config, req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(options.port, options.host, () => {
      server.off('error', fail);
      done();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

async function handle(root: string, config: StaticServerOptions['config'], req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  const common = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };
  if (path === '/config.json') {
    res.writeHead(200, { ...common, 'content-type': TYPES['.json'], 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : JSON.stringify(config));
    return;
  }
  const wanted = path.endsWith('/') ? `${path}index.html` : path;
  const file = resolve(join(root, normalize(wanted)));
  if (!file.startsWith(root + sep)) {
    res.writeHead(404, common).end();
    return;
  }
  const info = await stat(file).catch(() => null);
  if (info === null || !info.isFile()) {
    res.writeHead(404, { ...common, 'content-type': 'text/plain' }).end('not found');
    return;
  }
  const isHtml = extname(file) === '.html';
  res.writeHead(200, {
    ...common,
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    'content-length': info.size,
    // Vite names built assets by content hash: they never change under a name.
    'cache-control': wanted.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    ...(isHtml ? { 'content-security-policy': CONTENT_SECURITY_POLICY } : {}),
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  createReadStream(file).pipe(res);
}
