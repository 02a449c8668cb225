// Import direction in src/. Layers, top to bottom; a module imports only from its own folder,
// from a lower layer, or from a leaf:
//   composition root  src/main.ts, src/app.ts, src/server/**      (may import anything)
//   graphql           src/graphql/**
//   services          tasks, tenants, auth, metering, archive, webhooks (a service may import another)
//   infrastructure    pubsub, kling, storage, jobs, simulator, metrics
//   db                src/db/**
//   leaves            errors, logger, clock, ids, query-limits, config (src/*.ts), src/http/**
// Type-only imports count like any other: the swc parser reads the TypeScript source as written and
// reports `import type` as a dependency (dependency type "type-only"). dependency-cruiser 18 supports
// its tsc parser (and so `tsPreCompilationDeps` and `tsConfig`) only for typescript < 7, hence swc;
// tsconfig.json has no `paths`, and every relative import names its `.ts` file, so nothing is lost.

const ROOT = '^src/(main\\.ts|app\\.ts|server/)';
const GRAPHQL = '^src/graphql/';
const SERVICE_FOLDERS = 'tasks|tenants|auth|metering|archive|webhooks';
const SERVICES = `^src/(${SERVICE_FOLDERS})/`;
const INFRA_FOLDERS = 'pubsub|kling|storage|jobs|simulator|metrics';
const INFRA = `^src/(${INFRA_FOLDERS})/`;
const DB = '^src/db/';
const LEAVES = '^src/((errors|logger|clock|ids|query-limits|config)\\.ts$|http/)';
const LAYERS = [ROOT, GRAPHQL, SERVICES, INFRA, DB, LEAVES];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycle in src/, within a folder or across folders (type-only imports included).',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'leaves-import-only-leaves',
      severity: 'error',
      comment: 'Leaves (errors, logger, clock, ids, query-limits, config, http/) import only other leaves and packages.',
      from: { path: LEAVES },
      to: { path: '^src/', pathNot: LEAVES },
    },
    {
      name: 'db-imports-nothing-above',
      severity: 'error',
      comment: 'src/db/ imports only from src/db/ and the leaves.',
      from: { path: DB },
      to: { path: '^src/', pathNot: [DB, LEAVES] },
    },
    {
      name: 'infra-not-up',
      severity: 'error',
      comment: 'Infrastructure (pubsub, kling, storage, jobs, simulator, metrics) imports no service, graphql or root module.',
      from: { path: INFRA },
      to: { path: [SERVICES, GRAPHQL, ROOT] },
    },
    {
      name: 'infra-not-sideways',
      severity: 'error',
      comment: 'An infrastructure folder imports no other infrastructure folder: only its own folder, db and the leaves.',
      from: { path: INFRA },
      to: { path: INFRA, pathNot: '^src/$1/' },
    },
    {
      name: 'services-not-graphql',
      severity: 'error',
      comment: 'Services (tasks, tenants, auth, metering, archive, webhooks) import neither graphql nor the composition root.',
      from: { path: SERVICES },
      to: { path: [GRAPHQL, ROOT] },
    },
    {
      name: 'graphql-not-root',
      severity: 'error',
      comment: 'src/graphql/ does not import the composition root (main.ts, app.ts, server/).',
      from: { path: GRAPHQL },
      to: { path: ROOT },
    },
    {
      name: 'file-outside-layers',
      severity: 'error',
      comment: 'Every module in src/ belongs to a layer; a new folder needs a place in this file first.',
      from: { path: '^src/', pathNot: LAYERS },
      to: {},
    },
    {
      name: 'import-of-file-outside-layers',
      severity: 'error',
      comment: 'Every module in src/ belongs to a layer; a new folder needs a place in this file first.',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: LAYERS },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'Every import resolves (an unresolved import would escape the rules above).',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    parser: 'swc',
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6', 'cjs'],
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      mainFields: ['module', 'main', 'types', 'typings'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts', '.json'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
