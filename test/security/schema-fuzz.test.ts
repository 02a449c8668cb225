import { readFileSync } from 'node:fs';
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import fc from 'fast-check';
import { buildSchema } from 'graphql';
import type { GraphQLObjectType } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema as servedSchema } from '../../src/graphql/schema/index.ts';
import { callbackBody, callbackUrlOf, createTask, createTenant, postJson, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { ADMIN_KEY, expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { introspect, named, possibleTypes, printTypeRef, rootFields, typeOf } from '../support/schema-model.ts';
import type { InputValue, RootKind, SchemaModel, TypeRef } from '../support/schema-model.ts';
import { Collector, wsClient } from '../support/subscriptions.ts';
import type { Received } from '../support/subscriptions.ts';
import { NO_RATE_LIMITS } from './load.ts';

// Every root field, with arguments drawn from its declared types, run as its owner, as another
// tenant and as the admin: no answer may be a 5xx or carry INTERNAL_SERVER_ERROR ("Unexpected
// error."). The arguments, the selection sets and the list of fields all come from the live schema,
// so a new field or argument is fuzzed without a new test.
//
// FUZZ_SEED=1,2,3 runs each field once per seed; FUZZ_RUNS raises the runs per field and transport.

const SEEDS = (process.env.FUZZ_SEED ?? '20260611')
  .split(',')
  .map((seed) => Number(seed.trim()))
  .filter((seed) => Number.isInteger(seed));
const RUNS = Number(process.env.FUZZ_RUNS ?? 50);
/** A run takes tens of milliseconds; a failing one also shrinks. */
const TIMEOUT_MS = 30_000 + RUNS * 500;
/** How long a subscription may stay silent before it counts as open and quiet (the tenant-wide form). */
const QUIET_MS = 150;

type Transport = 'HTTP' | 'graphql-ws' | 'SSE';
type Target = { root: RootKind; name: string; transport: Transport };

// The test names come from the committed SDL (kept fresh by schema-printed.test.ts); the fuzz itself
// reads the live schema, and a test below checks that the two name the same root fields.
const printed = buildSchema(readFileSync(new URL('../../schema/schema.graphql', import.meta.url), 'utf8'));
const rootTypes: [RootKind, GraphQLObjectType | null | undefined][] = [
  ['Query', printed.getQueryType()],
  ['Mutation', printed.getMutationType()],
  ['Subscription', printed.getSubscriptionType()],
];
const TARGETS: Target[] = rootTypes.flatMap(([root, type]) =>
  type == null
    ? []
    : Object.keys(type.getFields())
        .sort()
        .flatMap((name) =>
          (root === 'Subscription' ? (['graphql-ws', 'SSE'] as const) : (['HTTP'] as const)).map((transport) => ({
            root,
            name,
            transport,
          })),
        ),
);
const label = (target: Target) => `${target.root}.${target.name} over ${target.transport}`;

// --- the world: two tenants with tasks, keys and pages, so that some generated ids are real --------

/** The real ids belong to A or B, so every run asks as the owner and as the other tenant of each, and as the admin. */
type Role = 'tenant A' | 'tenant B' | 'admin';

type World = {
  gateway: TestGateway;
  schema: SchemaModel;
  keys: Record<Role, string>;
  a: TestTenant;
  b: TestTenant;
  /** Global ids of A's and B's tasks, tenants and extra API keys. */
  ids: string[];
  /** Type names of node types and of the real ids; other object types, for ids of a wrong type. */
  nodeTypeNames: string[];
  otherTypeNames: string[];
  /** Cursors read from real pages of tasks (A and B) and tenants. */
  cursors: string[];
};

let world: World;
let gateway: TestGateway | undefined;

async function pageCursors(gateway: TestGateway, field: string, apiKey: string): Promise<string[]> {
  const query = `query ($after: String) { ${field}(first: 2, after: $after) { edges { cursor } pageInfo { hasNextPage endCursor } } }`;
  type Page = Record<string, { edges: { cursor: string }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } }>;
  const cursors: string[] = [];
  let after: string | null = null;
  for (;;) {
    const page: Page[string] = expectData(await gateway.graphql<Page>(query, { after }, apiKey), query)[field]!;
    cursors.push(...page.edges.map((edge) => edge.cursor));
    if (!page.pageInfo.hasNextPage || page.pageInfo.endCursor === null) return cursors;
    after = page.pageInfo.endCursor;
  }
}

async function createApiKeyId(gateway: TestGateway, tenant: TestTenant): Promise<string> {
  const query = 'mutation ($tenantId: ID!) { createApiKey(tenantId: $tenantId) { id } }';
  return expectData(await gateway.graphql<{ createApiKey: { id: string } }>(query, { tenantId: tenant.id }), query).createApiKey.id;
}

beforeAll(async () => {
  // The upstream stays quiet: accepted tasks wait in SUBMITTED and nothing calls back.
  gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 }, env: NO_RATE_LIMITS });
  gateway.simulator.settings.callbacks = false;
  const a = await createTenant(gateway, 'Fuzz A');
  const b = await createTenant(gateway, 'Fuzz B');
  const tasksOfA = [
    await createTask(gateway, a, TEXT_TO_VIDEO),
    await createTask(gateway, a, { ...TEXT_TO_VIDEO, prompt: 'A slow pan over a harbour', mode: 'PRO', durationSeconds: 10 }),
    await createTask(gateway, a, { ...TEXT_TO_VIDEO, externalTaskId: 'fuzz-a-3' }),
  ];
  const tasksOfB = [await createTask(gateway, b, TEXT_TO_VIDEO), await createTask(gateway, b, { ...TEXT_TO_VIDEO, mode: 'PRO' })];
  // One final task each, so that a per-task subscription completes after its first event.
  for (const task of [tasksOfA[0]!, tasksOfB[0]!]) {
    expect((await postJson(callbackUrlOf(gateway, task.id), callbackBody(task, 'succeed'))).status).toBe(200);
  }
  const keyIds = [await createApiKeyId(gateway, a), await createApiKeyId(gateway, b)];
  const schema = await introspect(gateway, b.apiKey);
  const ids = [...tasksOfA, ...tasksOfB].map((task) => task.id).concat(a.id, b.id, ...keyIds);
  const nodeTypeNames = [
    ...new Set([...(schema.types.has('Node') ? possibleTypes(schema, 'Node') : []), ...ids.map((id) => decodeGlobalID(id).typename)]),
  ];
  const otherTypeNames = [...schema.types.values()]
    .filter((type) => type.kind === 'OBJECT' && !nodeTypeNames.includes(type.name))
    .map((type) => type.name);
  const cursors = [
    ...(await pageCursors(gateway, 'omniTasks', a.apiKey)),
    ...(await pageCursors(gateway, 'omniTasks', b.apiKey)),
    ...(await pageCursors(gateway, 'tenants', ADMIN_KEY)),
  ];
  world = {
    gateway,
    schema,
    keys: { 'tenant A': a.apiKey, 'tenant B': b.apiKey, admin: ADMIN_KEY },
    a,
    b,
    ids,
    nodeTypeNames,
    otherTypeNames,
    cursors,
  };
});
afterAll(async () => {
  await gateway?.stop();
});

// --- values: an arbitrary for every input type, derived from its introspected definition -----------
//
// Each type has values GraphQL accepts (they reach the resolvers: that is where internal errors
// hide) and values it must refuse (wrong kinds, Int overflow, null for a non-null type, unknown
// enum values and fields). Most plans draw only the first kind, so that one refused value does not
// stop every other argument of the operation at the door; the rest mix in the second.

const INT_MAX = 2 ** 31 - 1;
const INT_MIN = -(2 ** 31);

/** What a type's arbitrary may draw: only values GraphQL coerces, or those and values it refuses. */
type Quality = 'accepted' | 'any';
type Values = { accepted: fc.Arbitrary<unknown>; refused: fc.Arbitrary<unknown> };
const pick = (values: Values, quality: Quality): fc.Arbitrary<unknown> =>
  quality === 'accepted' ? values.accepted : fc.oneof({ weight: 6, arbitrary: values.accepted }, { weight: 1, arbitrary: values.refused });

const SNIPPETS = [
  "'; DROP TABLE omni_tasks; --",
  "' OR '1'='1",
  "$1 $$ E'\\x00' \\\\ \\\"",
  '<script>alert(1)</script>',
  '{{7*7}} ${7*7} %s %n',
  '__proto__',
  'constructor',
  '../../etc/passwd',
  '\u202e\u200b\ufeff',
  '🦊🏔️',
  'e\u0301',
  'null',
  'undefined',
  'NaN',
];
const codePoint = fc
  .integer({ min: 0, max: 0x10ffff })
  .filter((cp) => cp < 0xd800 || cp > 0xdfff)
  .map((cp) => String.fromCodePoint(cp));
const controlChar = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f })).map((c) => String.fromCharCode(c));
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

const pad = (value: number, width: number) => String(value).padStart(width, '0');
const offset = fc
  .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.constantFrom(0, 15, 30, 45, 59))
  .map(([sign, hours, minutes]) => `${sign}${pad(hours, 2)}:${pad(minutes, 2)}`);

/**
 * Date-time strings the DateTime scalar accepts: any year 0000–9999, offsets up to ±23:59 (+14:00
 * and -14:00 often), `Z`/`z`, no offset, fractions beyond milliseconds, days past the end of the
 * month (JavaScript rolls them over, as it does 24:00:00).
 */
const dateTimeString = fc
  .record({
    // The edges of the range often: year 0000 and 9999 are where conversions overflow.
    year: fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(0, 1, 9999) },
      { weight: 1, arbitrary: fc.constantFrom(999, 1000, 1582, 1899, 1969, 1970, 2000, 2038, 2262, 9998) },
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 9999 }) },
      { weight: 3, arbitrary: fc.integer({ min: 2020, max: 2030 }) },
    ),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 28 }) }, { weight: 2, arbitrary: fc.constantFrom(29, 30, 31) }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.constantFrom('', '', '.0', '.5', '.999', '.123456', '.123456789'),
    offset: fc.oneof(
      { weight: 4, arbitrary: fc.constant('Z') },
      { weight: 3, arbitrary: fc.constantFrom('+14:00', '-14:00', '+00:00', '-00:00', '+05:30', '-12:00') },
      { weight: 1, arbitrary: offset },
      { weight: 1, arbitrary: fc.constantFrom('z', '', '+0530') },
    ),
  })
  .map(
    (d) =>
      `${pad(d.year, 4)}-${pad(d.month, 2)}-${pad(d.day, 2)}T${pad(d.hour, 2)}:${pad(d.minute, 2)}:${pad(d.second, 2)}${d.fraction}${d.offset}`,
  );
const dateTimeEdges = fc.constantFrom(
  '0000-01-01T00:00:00Z',
  '0000-01-01T00:00:00+14:00',
  '0001-01-01T00:00:00+14:00',
  '9999-12-31T23:59:59.999Z',
  '9999-12-31T23:59:59-14:00',
  '1970-01-01T00:00:00Z',
  '2024-12-31T24:00:00Z',
);

const wellFormedString = (maxLength: number) =>
  fc.string({
    unit: fc.oneof(
      { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
      { weight: 2, arbitrary: codePoint },
      { weight: 2, arbitrary: controlChar },
      { weight: 1, arbitrary: fc.constantFrom(...SNIPPETS) },
    ),
    maxLength,
  });

/** Any string JSON can carry: unicode, NUL and control characters, lone surrogates, very long ones. */
const anyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: wellFormedString(40) },
  { weight: 2, arbitrary: fc.string({ unit: fc.oneof(codePoint, loneSurrogate, controlChar), maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t\n', '\ud800', '\udfff\ud800') },
  // U+0000 anywhere: JSON carries it, PostgreSQL text cannot.
  { weight: 1, arbitrary: fc.tuple(wellFormedString(10), wellFormedString(10)).map(([before, after]) => `${before}\u0000${after}`) },
  { weight: 1, arbitrary: fc.oneof(dateTimeString, fc.uuid()) },
  {
    weight: 1,
    // Long, but within the request size limit (variables do not count towards the query limits).
    arbitrary: fc
      .tuple(fc.constantFrom('a', '字', '🦊', '\u0000', ' ', '\ud83e'), fc.constantFrom(255, 256, 1024, 2_500, 2_501, 10_000, 100_000))
      .map(([unit, count]) => unit.repeat(count)),
  },
);
const notAString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant({}),
  fc.constant([]),
);

const dateTimeValues: Values = {
  accepted: fc.oneof({ weight: 5, arbitrary: dateTimeString }, { weight: 1, arbitrary: dateTimeEdges }),
  refused: fc.oneof(
    fc.constantFrom(
      '2016-12-31T23:59:60Z',
      '2024-13-01T00:00:00Z',
      '2024-01-32T00:00:00Z',
      '2024-01-01T00:60:00Z',
      '2024-01-01T00:00:00+24:00',
      '2024-01-01T00:00:00+05',
      '+010000-01-01T00:00:00Z',
      '-000001-01-01T00:00:00Z',
      '2024-01-01',
      '2024-01-01 00:00:00Z',
      ' 2024-01-01T00:00:00Z',
      'now',
      '',
    ),
    anyString,
    notAString,
  ),
};

/** Int: the bounds (±2^31-1 and -2^31), page sizes around 0–100, anything in range; beyond int32 is refused. */
const intValues = (pageSize: boolean): Values => ({
  accepted: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(0, -1, 1, INT_MAX, -INT_MAX, INT_MIN) },
    { weight: pageSize ? 6 : 2, arbitrary: fc.integer({ min: -2, max: 102 }) },
    { weight: 2, arbitrary: fc.integer({ min: INT_MIN, max: INT_MAX }) },
  ),
  refused: fc.constantFrom(2 ** 31, INT_MIN - 1, 2 ** 53, -(2 ** 53), 1e21, 1.5, -0.5, '1', '0x10', '', true, [1], {}),
});

const floatValues: Values = {
  accepted: fc.oneof(
    fc.constantFrom(0, -0, 1, -1, 0.5, 1e308, -1e308, 5e-324, 2 ** 53 + 2, 1e21, INT_MAX, 2 ** 31),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
  ),
  refused: fc.constantFrom('1.5', 'Infinity', true, {}),
};

const booleanValues: Values = { accepted: fc.boolean(), refused: fc.constantFrom('true', 0, 1) };

const base64Junk: fc.Arbitrary<string> = fc.oneof(
  fc.base64String({ maxLength: 60 }),
  fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('base64')),
  fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('base64url')),
  anyString.map((text) => Buffer.from(text).toString('base64')),
);

/** Small edits of a real value: truncated, one character changed, padded, re-encoded. */
function mangled(real: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(real, fc.nat(), fc.constantFrom('truncate', 'flip', 'append', 'pad', 'standard', 'twice', 'upper'))
    .map(([value, at, how]) => {
      const i = value.length === 0 ? 0 : at % value.length;
      switch (how) {
        case 'truncate':
          return value.slice(0, i);
        case 'flip':
          return `${value.slice(0, i)}${value[i] === 'A' ? 'B' : 'A'}${value.slice(i + 1)}`;
        case 'append':
          return `${value}A`;
        case 'pad':
          return `${value}==`;
        case 'standard':
          return value.replace(/-/g, '+').replace(/_/g, '/');
        case 'twice':
          return Buffer.from(value).toString('base64');
        default:
          return value.toUpperCase();
      }
    });
}

/** ID: real ids of both tenants, the right type name with a non-uuid id, wrong type names, junk. */
function idValues(w: World): Values {
  const real = fc.constantFrom(...w.ids);
  const realUuid = real.map((id) => decodeGlobalID(id).id);
  const uuid = fc.oneof(
    fc.uuid(),
    realUuid,
    realUuid.map((id) => id.toUpperCase()),
    fc.constant('00000000-0000-0000-0000-000000000000'),
  );
  const notUuid = fc.oneof(
    anyString,
    mangled(realUuid),
    realUuid.map((id) => id.replace(/-/g, '')),
    realUuid.map((id) => `{${id}}`),
    realUuid.map((id) => ` ${id} `),
    fc.nat().map(String),
    fc.constantFrom('', '0', '-1', "' OR 1=1 --", 'ffffffff-ffff-ffff-ffff-fffffffffffg'),
  );
  const nodeType = fc.constantFrom(...w.nodeTypeNames);
  const wrongType = fc.oneof(fc.constantFrom(...w.otherTypeNames, 'omnitask', 'OMNITASK', 'Nope', '_', '__proto__'), anyString);
  return {
    accepted: fc.oneof(
      { weight: 6, arbitrary: real },
      { weight: 3, arbitrary: fc.tuple(nodeType, notUuid).map(([type, id]) => encodeGlobalID(type, id)) },
      { weight: 2, arbitrary: fc.tuple(nodeType, uuid).map(([type, id]) => encodeGlobalID(type, id)) },
      { weight: 2, arbitrary: fc.tuple(wrongType, fc.oneof(uuid, notUuid)).map(([type, id]) => encodeGlobalID(type, id)) },
      { weight: 1, arbitrary: mangled(real) },
      { weight: 1, arbitrary: base64Junk },
      { weight: 1, arbitrary: anyString },
      { weight: 1, arbitrary: fc.constantFrom('', '=', ':', encodeGlobalID('OmniTask', ''), encodeGlobalID('', 'x')) },
      // An Int is an ID too (coerced to a string).
      { weight: 1, arbitrary: fc.integer() },
    ),
    refused: fc.oneof(
      fc.boolean(),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n)),
      fc.constant({}),
      fc.constant([[]]),
    ),
  };
}

/** `after`/`before`: real cursors, mangled ones, well-formed cursors of odd instants and ids, junk. */
function cursorValues(w: World): fc.Arbitrary<unknown> {
  const real = fc.constantFrom(...w.cursors);
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const instant = fc.oneof(
    dateTimeString,
    dateTimeEdges,
    fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
  );
  const id = fc.oneof(
    fc.uuid(),
    fc.constantFrom(...w.ids).map((globalID) => decodeGlobalID(globalID).id),
    anyString,
  );
  return fc.oneof(
    { weight: 6, arbitrary: real },
    { weight: 2, arbitrary: mangled(real) },
    { weight: 3, arbitrary: fc.tuple(instant, id).map(([t, i]) => encode({ t, id: i })) },
    { weight: 1, arbitrary: fc.json().map((json) => Buffer.from(json).toString('base64url')) },
    { weight: 1, arbitrary: anyString },
    { weight: 1, arbitrary: fc.constantFrom('', '=', encode(null), encode({}), encode([])) },
  );
}

function scalarValues(w: World, name: string, argument: string): Values {
  switch (name) {
    case 'ID':
      return idValues(w);
    case 'String':
      return { accepted: argument === 'after' || argument === 'before' ? cursorValues(w) : anyString, refused: notAString };
    case 'Int':
      return intValues(argument === 'first' || argument === 'last');
    case 'Float':
      return floatValues;
    case 'Boolean':
      return booleanValues;
    case 'DateTime':
      return dateTimeValues;
    default:
      // A scalar this test does not know yet is still fuzzed, with values of every JSON kind.
      return {
        accepted: fc.oneof(anyString, dateTimeString, fc.integer(), floatValues.accepted, fc.boolean()),
        refused: fc.constant({ unknown: [] }),
      };
  }
}

const withoutUndefined = (record: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined));

/** A value of the type (never `undefined`); with quality 'any', sometimes one GraphQL must refuse. */
function typedValue(w: World, ref: TypeRef, argument: string, depth: number, quality: Quality): fc.Arbitrary<unknown> {
  if (ref.kind === 'NON_NULL') {
    const value = typedValue(w, ref.ofType!, argument, depth, quality);
    return pick({ accepted: value, refused: fc.constant(null) }, quality);
  }
  if (ref.kind === 'LIST') {
    const inner = ref.ofType!;
    const one = typedValue(w, inner, argument, depth, quality);
    const item = inner.kind === 'NON_NULL' ? one : fc.option(one, { nil: null, freq: 8 });
    return fc.oneof(
      { weight: 8, arbitrary: fc.array(item, { maxLength: 4 }) },
      { weight: 2, arbitrary: fc.array(item, { minLength: 5, maxLength: 12 }) },
      // Beyond any maximum a service declares (the SDL cannot say it).
      { weight: 1, arbitrary: fc.array(item, { minLength: 40, maxLength: 120 }) },
      // A single value where a list is expected: GraphQL coerces it to a list of one.
      { weight: 1, arbitrary: item },
    );
  }
  const type = typeOf(w.schema, ref);
  switch (type.kind) {
    case 'ENUM': {
      const values = type.enumValues!.map((value) => value.name);
      return pick(
        { accepted: fc.constantFrom(...values), refused: fc.constantFrom('NOT_A_VALUE', values[0]!.toLowerCase(), '', 0) },
        quality,
      );
    }
    case 'INPUT_OBJECT': {
      if (depth > 3) return fc.constant(null);
      const record = fc
        .record(Object.fromEntries(type.inputFields!.map((field) => [field.name, presentOrNot(w, field, depth + 1, quality)])))
        .map(withoutUndefined);
      // A field the type does not declare is refused.
      const unknownField = fc
        .tuple(record, fc.constantFrom('unknownField', '__proto__', 'constructor'))
        .map(([r, key]) => ({ ...r, [key]: 1 }));
      return pick({ accepted: record, refused: unknownField }, quality);
    }
    case 'SCALAR':
      return pick(scalarValues(w, type.name, argument), quality);
    default:
      return fc.constant(null);
  }
}

/**
 * An argument or input field: a value, or for a nullable one also null or left out (`undefined`).
 * Sparse plans leave most optional arguments out: arguments that must agree (first/after against
 * last/before) then often do, and the values get past the argument checks to the services.
 */
function presentOrNot(w: World, value: InputValue, depth: number, quality: Quality, sparse = false): fc.Arbitrary<unknown> {
  if (value.type.kind === 'NON_NULL' && value.defaultValue === null) {
    // Left out although required: refused.
    return pick({ accepted: typedValue(w, value.type, value.name, depth, quality), refused: fc.constant(undefined) }, quality);
  }
  const given = typedValue(w, value.type, value.name, depth, quality);
  return fc.oneof(
    { weight: sparse ? 1 : 6, arbitrary: given },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: sparse ? 4 : 1, arbitrary: fc.constant(undefined) },
  );
}

// --- operations: a selection set for the return type, every argument a variable ----------------

/** An argument of a field in the operation, passed as variable `variable`; `group` tells the field occurrences apart. */
type Slot = { variable: string; argument: InputValue; group: number };
type Selection =
  | { kind: 'field'; name: string; slots: Slot[]; children: Selection[] | null }
  | { kind: 'fragment'; on: string; children: Selection[] };

/** The selection of a type: leaves, `__typename`, objects `levels` deep, `... on X` for each member of an abstract type. */
function selectionOf(
  schema: SchemaModel,
  typeName: string,
  levels: number,
  path: string[],
  slotsFor: (args: InputValue[]) => Slot[],
): Selection[] {
  const type = schema.types.get(typeName)!;
  const typename: Selection = { kind: 'field', name: '__typename', slots: [], children: null };
  if (type.kind !== 'OBJECT') {
    return [
      typename,
      ...[...possibleTypes(schema, typeName)].sort().map(
        (member): Selection => ({
          kind: 'fragment',
          on: member,
          children: selectionOf(schema, member, levels, [...path, member], slotsFor),
        }),
      ),
    ];
  }
  const selections = [typename];
  for (const field of type.fields!) {
    const target = typeOf(schema, field.type);
    const leaf = target.kind === 'SCALAR' || target.kind === 'ENUM';
    if (!leaf && (levels === 0 || path.includes(target.name))) continue;
    selections.push({
      kind: 'field',
      name: field.name,
      slots: slotsFor(field.args),
      children: leaf ? null : selectionOf(schema, target.name, levels - 1, [...path, target.name], slotsFor),
    });
  }
  return selections;
}

/** Depth as the gateway counts it: every field and every fragment is a level. */
function depthOf(selections: Selection[]): number {
  return Math.max(0, ...selections.map((s) => 1 + (s.children === null ? 0 : depthOf(s.children))));
}

/** Cost as the gateway counts it, a page size given as a variable counting as its maximum (100). */
function costOf(selections: Selection[]): number {
  return selections.reduce((total, s) => {
    if (s.kind === 'fragment') return total + costOf(s.children);
    const paged = s.slots.some((slot) => slot.argument.name === 'first' || slot.argument.name === 'last');
    return total + 1 + (s.children === null ? 0 : (paged ? 100 : 1) * costOf(s.children));
  }, 0);
}

type Operation = { query: string; variables: Record<string, unknown> };
type Probe = { target: Target; slots: Slot[]; print(values: unknown[], inline: boolean): Operation };

/** The operation of one root field, as deep as the gateway's depth and cost limits allow. */
function probeOf(w: World, target: Target): Probe {
  const root = rootFields(w.schema).find((candidate) => candidate.root === target.root && candidate.field.name === target.name);
  if (root === undefined) throw new Error(`${target.root}.${target.name} is not in the live schema`);
  const limits = w.gateway.config.queryLimits;
  for (let levels = 3; levels >= 0; levels -= 1) {
    const slots: Slot[] = [];
    const slotsFor = (args: InputValue[]) => {
      const group = new Set(slots.map((s) => s.group)).size;
      return args.map((argument) => {
        const made = { variable: `v${slots.length}`, argument, group };
        slots.push(made);
        return made;
      });
    };
    const rootSlots = slotsFor(root.field.args);
    const returned = named(root.field.type).name!;
    const returnedKind = w.schema.types.get(returned)!.kind;
    const children =
      returnedKind === 'SCALAR' || returnedKind === 'ENUM' ? null : selectionOf(w.schema, returned, levels, [returned], slotsFor);
    const top: Selection = { kind: 'field', name: root.field.name, slots: rootSlots, children };
    if (depthOf([top]) > limits.depth || costOf([top]) > limits.cost) continue;
    return {
      target,
      slots,
      print(values, inline) {
        const variables: Record<string, unknown> = {};
        const argumentsOf = (own: Slot[]) => {
          const given = own.flatMap((s) => {
            const value = values[slots.indexOf(s)];
            if (!inline) {
              if (value !== undefined) variables[s.variable] = value;
              return [`${s.argument.name}: $${s.variable}`];
            }
            return value === undefined ? [] : [`${s.argument.name}: ${literalOf(w.schema, s.argument.type, value)}`];
          });
          return given.length === 0 ? '' : `(${given.join(', ')})`;
        };
        const print = (selections: Selection[]): string =>
          `{ ${selections
            .map((s) =>
              s.kind === 'fragment'
                ? `... on ${s.on} ${print(s.children)}`
                : `${s.name}${argumentsOf(s.slots)}${s.children === null ? '' : ` ${print(s.children)}`}`,
            )
            .join(' ')} }`;
        const definitions =
          inline || slots.length === 0 ? '' : `(${slots.map((s) => `$${s.variable}: ${printTypeRef(s.argument.type)}`).join(', ')})`;
        return { query: `${target.root.toLowerCase()} Fuzz${definitions} ${print([top])}`, variables };
      },
    };
  }
  throw new Error(`${label(target)}: even without nested objects the selection exceeds the query limits`);
}

/** A value as a GraphQL literal of the given type (enum values bare), for inline arguments. */
function literalOf(schema: SchemaModel, ref: TypeRef, value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (ref.kind === 'NON_NULL') return literalOf(schema, ref.ofType!, value);
  if (ref.kind === 'LIST') {
    return Array.isArray(value)
      ? `[${value.map((item) => literalOf(schema, ref.ofType!, item)).join(', ')}]`
      : literalOf(schema, ref.ofType!, value);
  }
  const type = typeOf(schema, ref);
  if (type.kind === 'ENUM' && typeof value === 'string' && /^[_A-Za-z]\w*$/.test(value) && !['true', 'false', 'null'].includes(value))
    return value;
  if (type.kind === 'INPUT_OBJECT' && typeof value === 'object' && !Array.isArray(value)) {
    const fields = new Map(type.inputFields!.map((field) => [field.name, field.type]));
    return `{ ${Object.entries(value)
      .map(([key, item]) => {
        const fieldType = fields.get(key);
        return `${key}: ${fieldType === undefined ? untypedLiteral(item) : literalOf(schema, fieldType, item)}`;
      })
      .join(', ')} }`;
  }
  return untypedLiteral(value);
}

function untypedLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map(untypedLiteral).join(', ')}]`;
  if (typeof value === 'object')
    return `{ ${Object.entries(value)
      .map(([key, item]) => `${key}: ${untypedLiteral(item)}`)
      .join(', ')} }`;
  // JSON's string escapes are GraphQL's; a lone surrogate becomes an escape GraphQL refuses as a syntax error.
  return JSON.stringify(value);
}

type Plan = { values: unknown[]; inline: boolean };

const FORWARD = ['first', 'after'];
const BACKWARD = ['last', 'before'];

function planOf(w: World, probe: Probe): fc.Arbitrary<Plan> {
  const valuesOf = (quality: Quality, sparse: boolean) =>
    fc.tuple(...probe.slots.map((s) => presentOrNot(w, s.argument, 0, quality, sparse)));
  // A Relay connection pages one way at a time: mostly only first/after or only last/before are
  // drawn, so that paging reaches the list and its filter; sometimes both, which must be refused.
  const paged = [...new Set(probe.slots.filter((s) => [...FORWARD, ...BACKWARD].includes(s.argument.name)).map((s) => s.group))];
  const direction = fc.oneof(
    { weight: 3, arbitrary: fc.constant('forward') },
    { weight: 3, arbitrary: fc.constant('backward') },
    { weight: 1, arbitrary: fc.constant('both') },
  );
  return fc
    .record({
      values: fc.oneof(
        { weight: 2, arbitrary: valuesOf('accepted', false) },
        { weight: 2, arbitrary: valuesOf('accepted', true) },
        { weight: 1, arbitrary: valuesOf('any', false) },
      ),
      directions: fc.tuple(...paged.map(() => direction)),
      // Mostly variables, so that values reach the resolvers; sometimes inline literals.
      inline: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    })
    .map(({ values, directions, inline }) => ({
      inline,
      values: values.map((value, i) => {
        const slot = probe.slots[i]!;
        const way = directions[paged.indexOf(slot.group)];
        const other = way === 'forward' ? BACKWARD : way === 'backward' ? FORWARD : [];
        return other.includes(slot.argument.name) ? undefined : value;
      }),
    }));
}

// --- running an operation and judging what came back ------------------------------------------

type GraphQLErrorLike = { message?: unknown; extensions?: { code?: unknown } };
type Observation = {
  role: Role;
  status: number | null;
  errors: GraphQLErrorLike[];
  /** What arrived, for the failure message. */
  answer: unknown;
  /** A graphql-ws close that ended the operation, if any. */
  closeCode: number | null;
};

const errorsIn = (payload: unknown): GraphQLErrorLike[] => {
  const errors = (payload as { errors?: unknown } | null)?.errors;
  return Array.isArray(errors) ? (errors as GraphQLErrorLike[]) : [];
};

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function overHttp(w: World, role: Role, operation: Operation): Promise<Observation> {
  const response = await fetch(`${w.gateway.url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      authorization: `Bearer ${w.keys[role]}`,
    },
    body: JSON.stringify(operation),
  });
  const answer = parseJson(await response.text());
  return { role, status: response.status, errors: errorsIn(answer), answer, closeCode: null };
}

/** The first message of a subscription over graphql-ws (or its error, or QUIET_MS of silence), then unsubscribes. */
async function overWebSocket(w: World, role: Role, operation: Operation): Promise<Observation> {
  const client = wsClient(w.gateway.url, w.keys[role]);
  const collector = new Collector();
  const unsubscribe = client.subscribe(operation, {
    next: (value) => collector.push(value as Received),
    error: (error) => collector.finish(error),
    complete: () => collector.finish(),
  });
  try {
    await collector.until((c) => c.items.length > 0 || c.done, 'a first message', QUIET_MS).catch(() => {});
  } finally {
    unsubscribe();
    await client.dispose();
  }
  // The error sink gets GraphQL errors (an array), a CloseEvent, or an Error.
  const error = collector.error as unknown;
  const close = error as { code?: unknown; reason?: unknown } | null;
  const closeCode = typeof close?.code === 'number' ? close.code : null;
  return {
    role,
    status: null,
    errors: [...collector.items.flatMap(errorsIn), ...(Array.isArray(error) ? (error as GraphQLErrorLike[]) : [])],
    answer: {
      messages: collector.items,
      error:
        Array.isArray(error) || error === null ? error : closeCode !== null ? { code: closeCode, reason: close?.reason } : String(error),
      done: collector.done,
    },
    closeCode,
  };
}

/** The first event of a subscription over SSE (or QUIET_MS of silence), then aborts the request. */
async function overSse(w: World, role: Role, operation: Operation): Promise<Observation> {
  const abort = new AbortController();
  const response = await fetch(`${w.gateway.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${w.keys[role]}` },
    body: JSON.stringify(operation),
    signal: abort.signal,
  });
  if (!(response.headers.get('content-type') ?? '').includes('text/event-stream') || response.body === null) {
    const answer = parseJson(await response.text());
    return { role, status: response.status, errors: errorsIn(answer), answer, closeCode: null };
  }
  const collector = new Collector();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const reading = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: ?(.*)$/m.exec(block)?.[1];
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (event === 'complete') collector.finish();
          else if (data) collector.push(parseJson(data) as Received);
        }
      }
    } catch {
      // Aborted by us below.
    }
    collector.finish();
  })();
  try {
    await collector.until((c) => c.items.length > 0 || c.done, 'a first event', QUIET_MS).catch(() => {});
  } finally {
    abort.abort();
    await reading;
  }
  return { role, status: response.status, errors: collector.items.flatMap(errorsIn), answer: { events: collector.items }, closeCode: null };
}

/** Why an observation shows an internal failure; empty when it does not. */
function internalFailures(observation: Observation): string[] {
  const reasons: string[] = [];
  if (observation.status !== null && observation.status >= 500) reasons.push(`HTTP ${observation.status}`);
  if (observation.closeCode === 1011 || (observation.closeCode !== null && observation.closeCode >= 4500 && observation.closeCode < 4600)) {
    reasons.push(`WebSocket closed with ${observation.closeCode}`);
  }
  for (const error of observation.errors) {
    if (error.extensions?.code === 'INTERNAL_SERVER_ERROR' || error.message === 'Unexpected error.') {
      reasons.push(`error ${JSON.stringify(error)}`);
    }
  }
  return reasons;
}

const clip = (text: string, max = 1_500) => (text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text);

/** Puts back what an admin mutation may have changed and later runs rely on: A's and B's limits. */
async function restoreTenants(w: World): Promise<void> {
  const unlimited = 'monthlyVideoSecondsLimit: null, maxConcurrentTasks: null, requestsPerSecond: null, createsPerMinute: null';
  const query = `mutation ($a: ID!, $b: ID!) {
    a: updateTenantLimits(input: { tenantId: $a, ${unlimited} }) { id }
    b: updateTenantLimits(input: { tenantId: $b, ${unlimited} }) { id }
  }`;
  expectData(await w.gateway.graphql(query, { a: w.a.id, b: w.b.id }), query);
}

const ROLES: Role[] = ['tenant A', 'tenant B', 'admin'];

/** One run: the operation as each role; throws with the operation, variables and answer on an internal failure. */
async function runPlan(w: World, probe: Probe, plan: Plan): Promise<void> {
  const operation = probe.print(plan.values, plan.inline);
  const { transport, root } = probe.target;
  let observations: Observation[];
  if (transport === 'HTTP') {
    // One role after another: an admin mutation must not race a tenant's request.
    observations = [];
    for (const role of ROLES) observations.push(await overHttp(w, role, operation));
    if (root === 'Mutation') await restoreTenants(w);
  } else {
    const over = transport === 'SSE' ? overSse : overWebSocket;
    observations = await Promise.all(ROLES.map((role) => over(w, role, operation)));
  }
  const failed = observations.flatMap((observation) => {
    const reasons = internalFailures(observation);
    return reasons.length === 0
      ? []
      : [`as ${observation.role}: ${reasons.join('; ')}\n  answer: ${clip(JSON.stringify(observation.answer))}`];
  });
  if (failed.length > 0) {
    throw new Error(
      `internal error from ${label(probe.target)}\n${failed.join('\n')}\noperation: ${clip(operation.query, 4_000)}\nvariables: ${clip(JSON.stringify(operation.variables), 3_000)}`,
    );
  }
}

function propertyOf(w: World, target: Target) {
  const probe = probeOf(w, target);
  return fc.asyncProperty(planOf(w, probe), (plan) => runPlan(w, probe, plan));
}

// --- tests ---------------------------------------------------------------------------------------

describe('schema-driven fuzz: no internal error from any client input', () => {
  it('fuzzes every root field of the live schema, with real ids and cursors among the values', () => {
    const live = rootFields(world.schema).map(({ root, field }) => `${root}.${field.name}`);
    expect(live.sort()).toEqual([...new Set(TARGETS.map((target) => `${target.root}.${target.name}`))].sort());
    expect(world.ids.length).toBeGreaterThanOrEqual(9);
    expect(world.cursors.length).toBeGreaterThanOrEqual(7);
  });

  for (const seed of SEEDS) {
    for (const target of TARGETS) {
      it(`${label(target)} as tenant A, tenant B and admin (seed ${seed}, ${RUNS} runs)`, { timeout: TIMEOUT_MS }, async () => {
        // On failure fast-check reports the seed, the path, the shrunk plan, and our message with the
        // operation, its variables and the answer.
        await fc.assert(propertyOf(world, target), { seed, numRuns: RUNS });
      });
    }
  }
});

// --- the fuzz can fail ---------------------------------------------------------------------------

/**
 * Replaces a root field's resolver (or subscribe function) in the schema the gateway serves with one
 * that throws a plain Error; returns the undo. createApp takes no plugins or schema, so the test
 * edits the served schema object in place, for the duration of one test.
 */
function plantThrowingResolver(root: RootKind, name: string): () => void {
  const type = {
    Query: servedSchema.getQueryType(),
    Mutation: servedSchema.getMutationType(),
    Subscription: servedSchema.getSubscriptionType(),
  }[root];
  const field = type?.getFields()[name];
  if (field === undefined) throw new Error(`${root}.${name} is not in the served schema`);
  const { resolve, subscribe } = field;
  const fail = () => {
    throw new Error('planted: this resolver fails as a bug would');
  };
  if (root === 'Subscription') field.subscribe = fail;
  else field.resolve = fail;
  return () => {
    field.resolve = resolve;
    field.subscribe = subscribe;
  };
}

/** Fields the fuzz passes as they are, one per transport and kind of root. */
const PLANTED: Target[] = [
  { root: 'Query', name: 'omniTask', transport: 'HTTP' },
  { root: 'Mutation', name: 'revokeApiKey', transport: 'HTTP' },
  { root: 'Subscription', name: 'omniTaskUpdated', transport: 'graphql-ws' },
  { root: 'Subscription', name: 'omniTaskUpdated', transport: 'SSE' },
];

describe('the fuzz fails when a resolver throws', () => {
  const seed = SEEDS[0] ?? 0;
  for (const target of PLANTED) {
    it(`finds a planted throwing resolver in ${label(target)} (seed ${seed})`, { timeout: TIMEOUT_MS }, async () => {
      const undo = plantThrowingResolver(target.root, target.name);
      let details: fc.RunDetails<[Plan]>;
      try {
        details = await fc.check(propertyOf(world, target), { seed, numRuns: RUNS, endOnFailure: true });
      } finally {
        undo();
      }
      expect(details.failed, `the fuzz passed ${label(target)} although its resolver throws`).toBe(true);
      expect(String(details.errorInstance)).toMatch(/INTERNAL_SERVER_ERROR|Unexpected error/);
      // The same plan passes once the resolver is back: what the fuzz found was the planted throw.
      const [plan] = details.counterexample!;
      await runPlan(world, probeOf(world, target), plan);
    });
  }
});
