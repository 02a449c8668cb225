import { randomUUID } from 'node:crypto';
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackBody, callbackUrlOf, createTask, createTenant, postJson, TEXT_TO_VIDEO } from '../support/fixtures.ts';
import type { TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { introspect, named, possibleTypes, required, rootFields } from '../support/schema-model.ts';
import type { Field, RootKind, SchemaModel, TypeRef } from '../support/schema-model.ts';
import { Collector, wsClient } from '../support/subscriptions.ts';
import type { Received } from '../support/subscriptions.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';
import { NO_RATE_LIMITS } from './load.ts';

/** DESIGN.md §4 and §9.3: the operations of the admin scope. */
const ADMIN_FIELDS = [
  'Mutation.createApiKey',
  'Query.apiKeys',
  'Mutation.createTenant',
  'Mutation.revokeApiKey',
  'Mutation.updateTenantLimits',
  'Query.tenants',
];

// --- operations built from the live schema (test/support/schema-model.ts) -----------------------

function containsId(schema: SchemaModel, ref: TypeRef, seen = new Set<string>()): boolean {
  const type = named(ref);
  if (type.kind === 'SCALAR') return type.name === 'ID';
  if (type.kind !== 'INPUT_OBJECT' || seen.has(type.name!)) return false;
  seen.add(type.name!);
  return (schema.types.get(type.name!)?.inputFields ?? []).some((field) => containsId(schema, field.type, seen));
}

/** A GraphQL literal of the given type: `id` in every ID position, the simplest valid value elsewhere. */
function literal(schema: SchemaModel, ref: TypeRef, id: string): string {
  if (ref.kind === 'NON_NULL') return literal(schema, ref.ofType!, id);
  if (ref.kind === 'LIST') return `[${literal(schema, ref.ofType!, id)}]`;
  const type = schema.types.get(ref.name!)!;
  switch (type.kind) {
    case 'ENUM':
      return type.enumValues![0]!.name;
    case 'INPUT_OBJECT': {
      const fields = type.inputFields!.filter((field) => required(field) || containsId(schema, field.type));
      return `{ ${fields.map((field) => `${field.name}: ${literal(schema, field.type, id)}`).join(', ')} }`;
    }
    default: {
      const scalars: Record<string, string> = {
        ID: JSON.stringify(id),
        String: '"isolation"',
        Int: '1',
        Float: '1',
        Boolean: 'false',
        DateTime: '"2020-01-01T00:00:00.000Z"',
      };
      const value = scalars[type.name];
      if (value === undefined) throw new Error(`no literal for scalar ${type.name}: teach the isolation matrix one`);
      return value;
    }
  }
}

/** Scalars only, `__typename`, and for abstract types `... on Error { message }` / `... on Node { id }` where they apply. */
function selection(schema: SchemaModel, ref: TypeRef): string {
  const type = schema.types.get(named(ref).name!)!;
  if (type.kind === 'SCALAR' || type.kind === 'ENUM') return '';
  if (type.kind === 'OBJECT') {
    const leaves = type.fields!.filter((field) => {
      const kind = schema.types.get(named(field.type).name!)!.kind;
      return (kind === 'SCALAR' || kind === 'ENUM') && !field.args.some(required);
    });
    return `{ __typename ${leaves.map((field) => field.name).join(' ')} }`;
  }
  const members = possibleTypes(schema, type.name);
  const fragments = [
    ['Error', 'message'],
    ['Node', 'id'],
  ]
    .filter(([iface]) => schema.types.has(iface!) && [...possibleTypes(schema, iface!)].some((name) => members.has(name)))
    .map(([iface, field]) => `... on ${iface} { ${field} }`);
  return `{ __typename ${fragments.join(' ')} }`;
}

type Probe = { root: RootKind; field: Field; operation: (id: string) => string };

function probes(schema: SchemaModel): Probe[] {
  return rootFields(schema).map(({ root, field }) => {
    const args = field.args.filter((arg) => required(arg) || containsId(schema, arg.type));
    const keyword = root.toLowerCase();
    return {
      root,
      field,
      operation: (id: string) =>
        `${keyword} { ${field.name}${args.length > 0 ? `(${args.map((arg) => `${arg.name}: ${literal(schema, arg.type, id)}`).join(', ')})` : ''} ${selection(schema, field.type)} }`,
    };
  });
}

// --- running operations ------------------------------------------------------------------------

let gateway: TestGateway;
let a: TestTenant;
let b: TestTenant;
/** Tenant A's ids, by type. */
const idsOfA: Record<string, string> = {};
/** A's second API key, whose id B tries to revoke. */
let secondKeyOfA: string;
let receiverOfA: Awaited<ReturnType<typeof startWebhookReceiver>>;

/**
 * A's webhook endpoint and one delivery of it, made again whenever A's own probe deleted them (the
 * positive control of deleteWebhookEndpoint), so each probe finds them.
 */
async function ensureWebhookIdsOfA(): Promise<void> {
  const probe = 'query ($id: ID!) { node(id: $id) { id } }';
  if (idsOfA.WebhookEndpoint !== undefined) {
    const found = expectData(
      await gateway.graphql<{ node: { id: string } | null }>(probe, { id: idsOfA.WebhookEndpoint }, a.apiKey),
      probe,
    );
    if (found.node !== null) return;
  }
  const create = 'mutation ($url: String!) { createWebhookEndpoint(input: { url: $url, events: [TASK_UPDATED] }) { endpoint { id } } }';
  const endpoint = expectData(
    await gateway.graphql<{ createWebhookEndpoint: { endpoint: { id: string } } }>(create, { url: receiverOfA.url }, a.apiKey),
    create,
  ).createWebhookEndpoint.endpoint;
  const send = 'mutation ($id: ID!) { sendTestWebhook(endpointId: $id) { id } }';
  const delivery = expectData(
    await gateway.graphql<{ sendTestWebhook: { id: string } }>(send, { id: endpoint.id }, a.apiKey),
    send,
  ).sendTestWebhook;
  idsOfA.WebhookEndpoint = endpoint.id;
  idsOfA.WebhookDelivery = delivery.id;
}

beforeAll(async () => {
  // A budget of 10: the scheduling test below fills it to make a task of A wait.
  gateway = await startGateway({
    delays: { processingMs: 600_000, finishMs: 1_200_000 },
    env: { ...NO_RATE_LIMITS, UPSTREAM_MAX_IN_FLIGHT: '10' },
  });
  gateway.simulator.settings.callbacks = false;
  a = await createTenant(gateway, 'Tenant A', { monthlyVideoSecondsLimit: 1000, maxConcurrentTasks: 10 });
  b = await createTenant(gateway, 'Tenant B');
  // A's task is final, so that A's own per-task subscription (the positive control) completes.
  const task = await createTask(gateway, a, TEXT_TO_VIDEO);
  const succeeded = callbackBody(task, 'succeed');
  gateway.simulator.finish(succeeded); // the upstream agrees: a final callback is confirmed by a read
  expect((await postJson(callbackUrlOf(gateway, task.id), succeeded)).status).toBe(200);
  const query = 'mutation ($tenantId: ID!) { createApiKey(tenantId: $tenantId) { id apiKey } }';
  const key = expectData(
    await gateway.graphql<{ createApiKey: { id: string; apiKey: string } }>(query, { tenantId: a.id }),
    query,
  ).createApiKey;
  secondKeyOfA = key.apiKey;
  idsOfA.OmniTask = task.id;
  idsOfA.Tenant = a.id;
  idsOfA.ApiKey = key.id;
  receiverOfA = await startWebhookReceiver();
  await ensureWebhookIdsOfA();
});
afterAll(async () => {
  await gateway?.stop();
  await receiverOfA?.close();
});

const unknownLike = (id: string) => encodeGlobalID(decodeGlobalID(id).typename, randomUUID());

/** What a caller observes: the HTTP status and body, or every graphql-ws message until the end. */
async function run(probe: Probe, id: string, apiKey: string): Promise<unknown> {
  const operation = probe.operation(id);
  if (probe.root !== 'Subscription') {
    const response = await gateway.graphql(operation, {}, apiKey);
    return { status: response.status, body: response.body };
  }
  const client = wsClient(gateway.url, apiKey);
  const collector = new Collector();
  try {
    client.subscribe(
      { query: operation },
      {
        next: (value) => collector.push(value as Received),
        error: (error) => collector.finish(Array.isArray(error) ? error : String(error)),
        complete: () => collector.finish(),
      },
    );
    await collector.untilDone(5_000);
    return { items: collector.items, error: collector.error };
  } finally {
    await client.dispose();
  }
}

function forbidden(answer: unknown): boolean {
  const body = (answer as { body?: { data?: Record<string, unknown> | null; errors?: { extensions?: { code?: string } }[] } }).body;
  return (
    body?.errors?.some((error) => error.extensions?.code === 'FORBIDDEN') === true &&
    Object.values(body.data ?? {}).every((v) => v === null)
  );
}

describe('tenant isolation over every root field with ID arguments', () => {
  it("answers B using A's ids exactly as it answers unknown ids; admin fields are FORBIDDEN either way", { timeout: 60_000 }, async () => {
    const schema = await introspect(gateway, b.apiKey);
    const all = probes(schema);
    const withIds = all.filter((probe) => probe.field.args.some((arg) => containsId(schema, arg.type)));
    const key = (probe: Probe) => `${probe.root}.${probe.field.name}`;
    // The parser found what the contract names (so a silent introspection failure cannot pass).
    expect(withIds.map(key)).toEqual(
      expect.arrayContaining([
        'Query.node',
        'Query.omniTask',
        'Mutation.refreshOmniTask',
        'Subscription.omniTaskUpdated',
        'Mutation.createApiKey',
        'Query.webhookDeliveries',
        'Mutation.updateWebhookEndpoint',
        'Mutation.deleteWebhookEndpoint',
        'Mutation.rotateWebhookSecret',
        'Mutation.sendTestWebhook',
        'Mutation.redeliverWebhook',
      ]),
    );
    expect(all.map(key)).toEqual(expect.arrayContaining(ADMIN_FIELDS));

    const covered = new Set<string>();
    for (const probe of withIds) {
      await ensureWebhookIdsOfA();
      const name = key(probe);
      const admin = ADMIN_FIELDS.includes(name);
      let aSeesMore = false;
      for (const [typename, idOfA] of Object.entries(idsOfA)) {
        const unknown = unknownLike(idOfA);
        const asB = await run(probe, idOfA, b.apiKey);
        const asBUnknown = await run(probe, unknown, b.apiKey);
        const asBOtherUnknown = await run(probe, unknownLike(idOfA), b.apiKey);
        const context = `${name} with A's ${typename} id\n${probe.operation(idOfA)}\nB with A's id: ${JSON.stringify(asB)}\nB with an unknown id: ${JSON.stringify(asBUnknown)}`;
        // Two unknown ids answer alike: nothing request-specific needs normalising.
        expect(asBOtherUnknown, `${context}\nanother unknown id: ${JSON.stringify(asBOtherUnknown)}`).toEqual(asBUnknown);
        expect(asB, context).toEqual(asBUnknown);
        if (admin) {
          expect(forbidden(asB), context).toBe(true);
          continue;
        }
        const asA = await run(probe, idOfA, a.apiKey);
        expect(forbidden(asA), `${name} is FORBIDDEN to tenants but not listed as admin in DESIGN §4\n${JSON.stringify(asA)}`).toBe(false);
        if (JSON.stringify(asA) !== JSON.stringify(await run(probe, unknown, a.apiKey))) aSeesMore = true;
      }
      // Positive control: A itself gets something for one of its ids, so the probe reached real data.
      if (!admin) expect(aSeesMore, `${name}: A's own ids answer like unknown ids, so the probe proves nothing`).toBe(true);
      covered.add(name);
    }
    expect([...covered].sort(), 'every root field with ID arguments is covered').toEqual(withIds.map(key).sort());

    // Admin fields without ID arguments are refused to a tenant too.
    for (const probe of all.filter((p) => ADMIN_FIELDS.includes(key(p)) && !covered.has(key(p)))) {
      const answer = await run(probe, unknownLike(idsOfA.Tenant!), b.apiKey);
      expect(forbidden(answer), `${key(probe)} as B: ${JSON.stringify(answer)}`).toBe(true);
      covered.add(key(probe));
    }
    expect(ADMIN_FIELDS.every((name) => covered.has(name))).toBe(true);

    // Nothing B sent changed A: A's second key still works, its limits stand, no tenant was added.
    const check = '{ viewer { tenant { id monthlyVideoSecondsLimit maxConcurrentTasks } } }';
    const viewers = await gateway.graphql<{ viewer: { tenant: Record<string, unknown> } }>(check, {}, secondKeyOfA);
    expect(expectData(viewers, check).viewer.tenant).toEqual({ id: a.id, monthlyVideoSecondsLimit: 1000, maxConcurrentTasks: 10 });
    const list = '{ tenants(first: 50) { edges { node { id } } } }';
    const tenants = expectData(await gateway.graphql<{ tenants: { edges: { node: { id: string } }[] } }>(list), list);
    expect(tenants.tenants.edges.map((edge) => edge.node.id).sort()).toEqual([a.id, b.id].sort());
  });
});

describe('tenant isolation of the upstream queue: estimate, queue position, cost, cancel', () => {
  const SCHEDULING_FIELDS = '... on OmniTask { id status priority queuePosition units upstreamUnits }';
  const ESTIMATE = `query ($input: CreateOmniVideoInput!) { estimateOmniVideo(input: $input) {
    ... on OmniVideoEstimate { units videoSeconds remainingMonthlySeconds inFlightTasks maxConcurrentTasks } } }`;

  it("B sees none of A's figures and cannot cancel A's waiting task; A's own view is whole", { timeout: 30_000 }, async () => {
    // A third tenant fills the upstream budget (10 by default; its tasks never finish here), so A's next task waits.
    const c = await createTenant(gateway, 'Tenant C');
    for (let i = 0; i < 10; i += 1) await createTask(gateway, c, TEXT_TO_VIDEO);
    const waiting = await createTask(gateway, a, TEXT_TO_VIDEO);
    expect(waiting.status).toBe('PENDING');
    const client = wsClient(gateway.url, b.apiKey);
    const seenByB = new Collector();
    client.subscribe(
      { query: 'subscription { omniTaskUpdated { id status } }' },
      {
        next: (value) => seenByB.push(value as Received),
        error: (error) => seenByB.finish(error),
        complete: () => seenByB.finish(),
      },
    );
    try {
      const estimateAs = async (key: string) =>
        expectData(await gateway.graphql<{ estimateOmniVideo: Record<string, unknown> }>(ESTIMATE, { input: TEXT_TO_VIDEO }, key), ESTIMATE)
          .estimateOmniVideo;
      // B's room is B's alone: no limits, nothing in flight, whatever A has.
      expect(await estimateAs(b.apiKey)).toEqual({
        units: 3,
        videoSeconds: 5,
        remainingMonthlySeconds: null,
        inFlightTasks: 0,
        maxConcurrentTasks: null,
      });
      // A's: 1000 s a month, 5 s used by its finished task, 5 s reserved by the waiting one.
      expect(await estimateAs(a.apiKey)).toEqual({
        units: 3,
        videoSeconds: 5,
        remainingMonthlySeconds: 990,
        inFlightTasks: 1,
        maxConcurrentTasks: 10,
      });

      const read = `query ($id: ID!) { node(id: $id) { ${SCHEDULING_FIELDS} } omniTask(id: $id) { id queuePosition units } }`;
      for (const id of [waiting.id, idsOfA.OmniTask!]) {
        const asB = await gateway.graphql(read, { id }, b.apiKey);
        expect(asB).toEqual(await gateway.graphql(read, { id: unknownLike(id) }, b.apiKey));
        expect(asB.body.data).toEqual({ node: null, omniTask: null });
      }
      const asA = expectData(await gateway.graphql<{ node: Record<string, unknown> }>(read, { id: waiting.id }, a.apiKey), read);
      expect(asA.node).toMatchObject({ status: 'PENDING', priority: 'NORMAL', queuePosition: 1, units: null, upstreamUnits: null });
      const final = expectData(await gateway.graphql<{ node: Record<string, unknown> }>(read, { id: idsOfA.OmniTask }, a.apiKey), read);
      expect(final.node).toMatchObject({ status: 'SUCCEEDED', units: 3, queuePosition: null });

      const cancel =
        'mutation ($id: ID!) { cancelOmniTask(id: $id) { __typename ... on CancelOmniTaskSuccess { task { id status } } ... on Error { message } } }';
      const byB = await gateway.graphql(cancel, { id: waiting.id }, b.apiKey);
      expect(byB).toEqual(await gateway.graphql(cancel, { id: unknownLike(waiting.id) }, b.apiKey));
      expect(byB.body.data).toEqual({ cancelOmniTask: { __typename: 'TaskNotFoundError', message: 'No task has this id.' } });
      expect(expectData(await gateway.graphql<{ node: { status: string } }>(read, { id: waiting.id }, a.apiKey), read).node.status).toBe(
        'PENDING',
      );
      const byA = await gateway.graphql(cancel, { id: waiting.id }, a.apiKey);
      expect(byA.body.data).toEqual({
        cancelOmniTask: { __typename: 'CancelOmniTaskSuccess', task: { id: waiting.id, status: 'CANCELLED' } },
      });

      // B's tenant-wide stream carried none of it: B's own next task is the first thing B hears of.
      const own = await createTask(gateway, b, TEXT_TO_VIDEO);
      await seenByB.until((collector) => collector.items.some((item) => item.data?.omniTaskUpdated?.id === own.id), "B's own task");
      expect(seenByB.items.map((item) => item.data?.omniTaskUpdated?.id).filter((id) => id !== own.id)).toEqual([]);
    } finally {
      await client.dispose();
    }
  });
});
