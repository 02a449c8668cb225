import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { introspectionFromSchema } from 'graphql';
import type { GraphQLSchema } from 'graphql';
import type { GraphiQLOptions } from 'graphql-yoga';
import { sendJson } from '../http/respond.ts';

/*
 * GraphiQL served by the gateway alone. Yoga's own page loads GraphiQL from unpkg.com, so it never
 * renders offline. @graphql-yoga/render-graphiql (yoga's "offline usage") holds the same build as
 * strings; its own renderer inlines all of them (about 9 MB) into every page, so instead the page
 * here is small and names them as assets of the gateway, sent once and revalidated by ETag.
 *
 * The schema travels inside the page (an introspection result, as GraphiQL's `schema` prop takes
 * it), so GraphiQL never sends its introspection query: that query is about 18 levels deep with
 * its fragments, and the gateway refuses anything deeper than QUERY_MAX_DEPTH (10) before it runs.
 */

/** Under this path, relative to the page's own (`/graphql`), so a PUBLIC_BASE_URL prefix carries over. */
export const GRAPHIQL_ASSETS_PATH = '/graphiql/assets/';

const DEFAULT_QUERY = '{ viewer { tenant { name } } }';

/** Yoga's `graphiql` option: what every GraphiQL page starts with. */
export const graphiqlOptions: GraphiQLOptions = {
  title: 'Omni Gateway GraphiQL',
  defaultQuery: DEFAULT_QUERY,
  headers: JSON.stringify({ Authorization: 'Bearer <your API key>' }, null, 2),
  // The header editor holds an API key: keep it out of the browser's storage.
  shouldPersistHeaders: false,
};

type Bundle = typeof import('@graphql-yoga/render-graphiql/graphiql');

type Asset = { type: string; body(bundle: Bundle): Buffer };

const text = (pick: (bundle: Bundle) => string) => (bundle: Bundle) => Buffer.from(pick(bundle), 'utf8');

const ASSETS: Record<string, Asset> = {
  'graphiql.css': { type: 'text/css; charset=utf-8', body: text((b) => b.css) },
  'graphiql.js': { type: 'text/javascript; charset=utf-8', body: text((b) => b.js) },
  'editor.worker.js': { type: 'text/javascript; charset=utf-8', body: text((b) => b.editorWorkerService) },
  'json.worker.js': { type: 'text/javascript; charset=utf-8', body: text((b) => b.jsonWorker) },
  'graphql.worker.js': { type: 'text/javascript; charset=utf-8', body: text((b) => b.graphqlWorker) },
  'favicon.ico': { type: 'image/x-icon', body: (b) => Buffer.from(b.favicon.slice(b.favicon.indexOf(',') + 1), 'base64') },
};

/** Monaco's worker labels and the assets that hold them. */
const WORKERS = { editorWorkerService: 'editor.worker.js', json: 'json.worker.js', graphql: 'graphql.worker.js' };

/** JSON that is safe inside a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function escapeHtml(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Yoga's `renderGraphiQL`: the page, with the schema built in. */
export function createGraphiQLRenderer(schema: GraphQLSchema): (options: GraphiQLOptions) => string {
  let introspection: ReturnType<typeof introspectionFromSchema> | null = null;
  return (options) => {
    introspection ??= introspectionFromSchema(schema, { descriptions: true, inputValueDeprecation: true });
    const props = { ...options, query: options.defaultQuery, schema: introspection };
    const assets = GRAPHIQL_ASSETS_PATH.slice(1);
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(options.title ?? 'GraphiQL')}</title>
<link rel="icon" href="${assets}favicon.ico">
<link rel="stylesheet" href="${assets}graphiql.css">
</head>
<body id="body" class="no-focus-outline">
<div id="root">Loading GraphiQL…</div>
<script>
const workers = ${scriptJson(WORKERS)};
self.MonacoEnvironment = {
  globalAPI: false,
  getWorkerUrl: (_moduleId, label) => new URL('${assets}' + workers[label], location.href).href,
};
</script>
<script src="${assets}graphiql.js"></script>
<script>YogaGraphiQL.renderYogaGraphiQL(document.getElementById('root'), ${scriptJson(props)});</script>
</body>
</html>
`;
  };
}

type Prepared = { type: string; etag: string; plain: Buffer; gzipped: Promise<Buffer> | null };

/**
 * `GET|HEAD /graphiql/assets/{name}`: the GraphiQL build, read from the package on first use (so a
 * gateway nobody browses never loads it), gzipped once when a browser accepts it.
 */
export function createGraphiQLAssetHandler() {
  let bundle: Promise<Bundle> | null = null;
  const prepared = new Map<string, Prepared>();

  async function asset(name: string, spec: Asset): Promise<Prepared> {
    let entry = prepared.get(name);
    if (entry === undefined) {
      bundle ??= import('@graphql-yoga/render-graphiql/graphiql');
      const plain = spec.body(await bundle);
      const etag = `"${createHash('sha256').update(plain).digest('base64url').slice(0, 22)}"`;
      entry = prepared.get(name) ?? { type: spec.type, etag, plain, gzipped: null };
      prepared.set(name, entry);
    }
    return entry;
  }

  return async function serveAsset(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const name = path.slice(GRAPHIQL_ASSETS_PATH.length);
    const spec = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
    if (spec === undefined) return sendJson(res, 404, { error: 'not found' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
    const entry = await asset(name, spec);
    // Revalidated on every load: a new version of the package shows at once.
    const common = { etag: entry.etag, 'cache-control': 'no-cache', vary: 'accept-encoding' };
    if (req.headers['if-none-match'] === entry.etag) {
      res.writeHead(304, common).end();
      return;
    }
    const wantsGzip = /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
    if (wantsGzip) entry.gzipped ??= promisify(gzip)(entry.plain);
    const body = wantsGzip && entry.gzipped !== null ? await entry.gzipped : entry.plain;
    res.writeHead(200, {
      ...common,
      'content-type': entry.type,
      'content-length': body.length,
      ...(body === entry.plain ? {} : { 'content-encoding': 'gzip' }),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
