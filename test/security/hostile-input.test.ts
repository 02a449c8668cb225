import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { png } from '../tasks/image-fixtures.ts';
import { CREATE_OMNI_VIDEO, createTenant, TASK_FIELDS, taskUuid } from '../support/fixtures.ts';
import type { CreateResult, TaskView, TestTenant } from '../support/fixtures.ts';
import { expectData, startGateway } from '../support/gateway.ts';
import type { GraphQLResponse, TestGateway } from '../support/gateway.ts';
import { NO_RATE_LIMITS } from './load.ts';

const NUM_RUNS = Number(process.env.SECURITY_RUNS ?? 150);
const SEED = Number(process.env.SECURITY_SEED ?? Date.now() % 2 ** 31);

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  // The upstream stays quiet: accepted tasks wait in SUBMITTED and nothing calls back.
  gateway = await startGateway({ delays: { processingMs: 600_000, finishMs: 1_200_000 }, env: NO_RATE_LIMITS });
  gateway.simulator.settings.callbacks = false;
  tenant = await createTenant(gateway, 'Hostile');
});
afterAll(async () => {
  await gateway?.stop();
});

type Input = Record<string, unknown>;

/** Posts createOmniVideo as the tenant and returns the raw HTTP answer (no assertion yet). */
async function create(input: Input): Promise<GraphQLResponse<{ createOmniVideo: CreateResult }>> {
  return gateway.graphql<{ createOmniVideo: CreateResult }>(CREATE_OMNI_VIDEO, { input }, tenant.apiKey);
}

async function readTask(id: string): Promise<TaskView | null> {
  const query = `query ($id: ID!) { omniTask(id: $id) { ${TASK_FIELDS} } }`;
  return expectData(await gateway.graphql<{ omniTask: TaskView | null }>(query, { id }, tenant.apiKey), query).omniTask;
}

/** The create body the gateway sent upstream for a task. */
function upstreamBodyOf(task: TaskView): Record<string, unknown> | undefined {
  const id = taskUuid(task.id);
  return gateway.upstreamRequests.find((request) => request.method === 'POST' && request.body?.external_task_id === id)?.body ?? undefined;
}

/**
 * The outcome every input must have: HTTP 200, no GraphQL error, and data that is either a task
 * or an InvalidInputError whose issues name fields of the input.
 */
function expectTypedOutcome(response: GraphQLResponse<{ createOmniVideo: CreateResult }>, input: Input): CreateResult {
  const context = `input ${JSON.stringify(input).slice(0, 2000)}\nanswer ${response.status} ${JSON.stringify(response.body).slice(0, 2000)}`;
  expect(response.status, context).toBe(200);
  expect(response.body.errors, context).toBeUndefined();
  const result = response.body.data?.createOmniVideo;
  expect(['CreateOmniVideoSuccess', 'InvalidInputError'], context).toContain(result?.__typename);
  if (result?.__typename === 'InvalidInputError') {
    expect(result.issues.length, context).toBeGreaterThan(0);
    for (const issue of result.issues) {
      expect(issue.path[0], context).toBe('input');
      expect(issue.message.length, context).toBeGreaterThan(0);
    }
  }
  return result as CreateResult;
}

/** A successful create stores every client-given string exactly as given, and sends it upstream so. */
async function expectStoredVerbatim(task: TaskView, input: Input): Promise<void> {
  const read = await readTask(task.id);
  const context = `input ${JSON.stringify(input).slice(0, 2000)}\nread ${JSON.stringify(read).slice(0, 2000)}`;
  expect(read, context).toEqual(task);
  expect(read?.prompt, context).toBe(input.prompt);
  expect(read?.externalTaskId ?? null, context).toBe(input.externalTaskId ?? null);
  const images = (input.referenceImages as { url?: string | null }[] | null | undefined) ?? [];
  expect(
    read?.referenceImages.map((image) => image.url),
    context,
  ).toEqual(images.map((image) => image.url ?? null));
  const elements = (input.elements as { elementId: string }[] | null | undefined) ?? [];
  expect(
    read?.elements.map((element) => element.elementId),
    context,
  ).toEqual(elements.map((element) => element.elementId));
  const videos = (input.referenceVideos as { url: string }[] | null | undefined) ?? [];
  expect(
    read?.referenceVideos.map((video) => video.url),
    context,
  ).toEqual(videos.map((video) => video.url));

  const body = upstreamBodyOf(task);
  expect(body, `no upstream create recorded for ${task.id}`).toBeDefined();
  expect(body?.prompt, context).toBe(input.prompt);
  const imageList = (body?.image_list as { image_url: string }[] | undefined) ?? [];
  images.forEach((image, i) => {
    if (image.url != null) expect(imageList[i]?.image_url, context).toBe(image.url);
  });
  const videoList = (body?.video_list as { video_url: string }[] | undefined) ?? [];
  expect(
    videoList.map((video) => video.video_url),
    context,
  ).toEqual(videos.map((video) => video.url));
}

// --- generators ---------------------------------------------------------------------------------

const SNIPPETS = [
  "'; DROP TABLE omni_tasks; --",
  "' OR '1'='1",
  "$1 $$ E'\\x00' \\\\ \\\" ",
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '&lt;&amp;&#0;',
  '{{7*7}} ${7*7} %s %n',
  '<<<image_1>>>',
  '<<<element_2>>>',
  '<<<video_1>>>',
  '\u202e\u200b\ufeff',
  '🦊🏔️',
  'e\u0301',
  '../../etc/passwd',
  'NULL',
];

const codePoint = fc
  .integer({ min: 0, max: 0x10ffff })
  .filter((cp) => cp < 0xd800 || cp > 0xdfff)
  .map((cp) => String.fromCodePoint(cp));
const controlChar = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f })).map((c) => String.fromCharCode(c));
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

/** Any well-formed Unicode string, biased towards control characters and injection snippets. */
const wellFormedString = (maxLength = 40) =>
  fc.string({
    unit: fc.oneof(
      { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
      { weight: 2, arbitrary: codePoint },
      { weight: 2, arbitrary: controlChar },
      { weight: 1, arbitrary: fc.constantFrom(...SNIPPETS) },
    ),
    maxLength,
  });
/** Also strings that are not well-formed UTF-16 (lone surrogates), which JSON can carry. */
const anyString = (maxLength = 40) =>
  fc.oneof(
    { weight: 5, arbitrary: wellFormedString(maxLength) },
    { weight: 1, arbitrary: fc.string({ unit: fc.oneof(codePoint, loneSurrogate, controlChar), maxLength }) },
  );

const PRIVATE_HOSTS = [
  '127.0.0.1',
  'localhost',
  '[::1]',
  '10.0.0.7',
  '172.16.0.1',
  '192.168.1.1',
  '169.254.169.254',
  '0.0.0.0',
  '[fd00::1]',
  'metadata.google.internal',
];
const url = fc.oneof(
  { weight: 3, arbitrary: fc.webUrl({ withQueryParameters: true, withFragments: true }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('http', 'https'), fc.constantFrom(...PRIVATE_HOSTS), anyString(12))
      .map(([s, h, p]) => `${s}://${h}/${p}`),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'javascript:alert(1)',
      'file:///etc/passwd',
      'ftp://example.com/a.png',
      'gopher://127.0.0.1:6379/_INFO',
      'data:image/png;base64,AAAA',
      'http://',
      'https://',
      '//example.com/a.png',
      'HTTPS://EXAMPLE.COM/A.PNG',
      'http://a b.example/x.png',
      'http://example.com/%00%0d%0a',
      'http://user:pass@example.com:99999/x',
      '',
      ' https://example.com/x.png ',
    ),
  },
  { weight: 2, arbitrary: anyString(60) },
);

const largeImage = png(640, 480).toString('base64');
const base64 = fc.oneof(
  { weight: 2, arbitrary: fc.base64String({ maxLength: 80 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      largeImage,
      `data:image/png;base64,${largeImage}`,
      png(10, 10).toString('base64'),
      png(3000, 300).toString('base64'),
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom('', '====', 'data:image/png,raw', 'data:;base64,', 'A'.repeat(4 * 1024)) },
  { weight: 1, arbitrary: anyString(40) },
);
const nullable = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: null });

const frameType = fc.constantFrom('FIRST_FRAME', 'END_FRAME');
const referenceImage = fc.record({ url: nullable(url), base64: nullable(base64), type: nullable(frameType) }, { requiredKeys: [] });
const element = fc.record({
  elementId: fc.oneof(
    fc.stringMatching(/^\d{1,19}$/),
    fc.bigInt({ min: 0n, max: 2n ** 70n }).map(String),
    fc.constantFrom('9223372036854775807', '9223372036854775808', '-1', '1e3', '0x10', ' 1', ''),
    anyString(20),
  ),
});
const referenceVideo = fc.record(
  { url, referType: fc.constantFrom('FEATURE', 'BASE'), keepOriginalSound: nullable(fc.boolean()) },
  { requiredKeys: ['url', 'referType'] },
);

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

const validUrl = fc
  .tuple(fc.constantFrom('http', 'https'), fc.oneof(fc.domain(), fc.constantFrom(...PRIVATE_HOSTS)), wellFormedString(30))
  .map(([scheme, host, path]) => `${scheme}://${host}/${encodeURIComponent(path)}`);

/** Per field: a value that follows the rules, and any type-correct value. */
const FIELDS: Record<string, { valid: fc.Arbitrary<unknown>; any: fc.Arbitrary<unknown> }> = {
  prompt: {
    // U+0000 has a test of its own: refusing it is as good as storing it.
    valid: wellFormedString(120).filter((p) => p.trim().length > 0 && !p.includes('\u0000') && !/<<<(image|element|video)_\d+>>>/.test(p)),
    any: fc.oneof(
      { weight: 3, arbitrary: anyString(80) },
      { weight: 2, arbitrary: fc.constantFrom('A fox runs through snow', '<<<image_1>>> walks; <<<element_1>>> waves; <<<video_1>>>') },
      { weight: 1, arbitrary: fc.integer({ min: 2495, max: 2505 }).map((n) => '字'.repeat(n)) },
      { weight: 1, arbitrary: fc.constantFrom('', ' ', '\n\t', '\u0000') },
    ),
  },
  modelName: { valid: fc.constantFrom(undefined, 'kling-video-o1'), any: nullable(fc.oneof(fc.constant('kling-video-o1'), anyString(20))) },
  mode: { valid: fc.constantFrom('STD', 'PRO'), any: nullable(fc.constantFrom('STD', 'PRO')) },
  aspectRatio: {
    valid: fc.constantFrom('RATIO_16_9', 'RATIO_9_16', 'RATIO_1_1'),
    any: nullable(fc.constantFrom('RATIO_16_9', 'RATIO_9_16', 'RATIO_1_1')),
  },
  durationSeconds: { valid: fc.constantFrom(5, 10), any: nullable(fc.oneof(fc.integer({ min: 0, max: 12 }), int32)) },
  referenceImages: {
    valid: fc.array(
      validUrl.map((url) => ({ url })),
      { maxLength: 3 },
    ),
    any: nullable(fc.array(referenceImage, { maxLength: 9 })),
  },
  elements: {
    valid: fc.array(fc.record({ elementId: fc.stringMatching(/^\d{1,18}$/) }), { maxLength: 1 }),
    any: nullable(fc.array(element, { maxLength: 9 })),
  },
  referenceVideos: {
    valid: fc.array(fc.record({ url: validUrl, referType: fc.constant('FEATURE'), keepOriginalSound: fc.boolean() }), { maxLength: 1 }),
    any: nullable(fc.array(referenceVideo, { maxLength: 3 })),
  },
  externalTaskId: { valid: fc.constantFrom(undefined), any: nullable(fc.oneof(fc.uuid(), anyString(140))) },
  idempotencyKey: { valid: fc.constantFrom(undefined), any: nullable(fc.oneof(fc.uuid(), anyString(140))) },
};

function inputOf(pick: (field: { valid: fc.Arbitrary<unknown>; any: fc.Arbitrary<unknown> }) => fc.Arbitrary<unknown>) {
  return fc
    .record(Object.fromEntries(Object.entries(FIELDS).map(([name, field]) => [name, pick(field)])))
    .map((input) => Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined)) as Input)
    .filter((input) => typeof input.prompt === 'string');
}

/**
 * Type-correct variables for CreateOmniVideoInput (every value passes GraphQL coercion): fields
 * drawn at random, or mostly rule-abiding with a few fields replaced by anything, so that both
 * refusals and accepted tasks are common.
 */
const createInput: fc.Arbitrary<Input> = fc.oneof(
  inputOf((field) => fc.oneof(field.any, fc.constant(undefined))),
  inputOf((field) => fc.oneof({ weight: 4, arbitrary: field.valid }, { weight: 1, arbitrary: field.any })),
);

/**
 * Inputs that follow the rules (so they must be accepted) but carry hostile, well-formed strings,
 * with an externalTaskId of any printable graphemes (the property makes it unique).
 */
const acceptableInput = fc.tuple(
  inputOf((field) => field.valid),
  fc.string({ unit: 'grapheme', maxLength: 30 }).filter((id) => !/\p{Cc}/u.test(id)),
);

/** Strings that PostgreSQL text or jsonb cannot hold as given: U+0000 and lone surrogates. */
const UNSTORABLE: [string, Input][] = [
  ['U+0000 in the prompt', { prompt: 'before\u0000after', mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 }],
  ['a lone surrogate in the prompt', { prompt: 'half an emoji \ud83e', aspectRatio: 'RATIO_16_9' }],
  [
    'a lone surrogate in an image URL',
    { prompt: 'ok', aspectRatio: 'RATIO_16_9', referenceImages: [{ url: 'https://example.com/\ud800.png' }] },
  ],
  [
    'U+0000 in a video URL',
    { prompt: 'ok', aspectRatio: 'RATIO_16_9', referenceVideos: [{ url: 'https://example.com/a\u0000.mp4', referType: 'FEATURE' }] },
  ],
  ['a lone surrogate in externalTaskId', { prompt: 'ok', aspectRatio: 'RATIO_16_9', externalTaskId: 'ext-\udc00' }],
];

// --- tests --------------------------------------------------------------------------------------

describe('createOmniVideo under hostile input', () => {
  it('answers any type-correct input with CreateOmniVideoSuccess or InvalidInputError, never an error', { timeout: 90_000 }, async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(createInput, async (input) => {
        const result = expectTypedOutcome(await create(input), input);
        if (result.__typename === 'CreateOmniVideoSuccess') {
          accepted += 1;
          // An idempotent replay returns the earlier task, which was created from the same strings.
          await expectStoredVerbatim(result.task, input);
        }
      }),
      { numRuns: NUM_RUNS, seed: SEED, interruptAfterTimeLimit: 80_000, examples: UNSTORABLE.map(([, input]) => [input] as [Input]) },
    );
    console.log(`hostile input (${gateway.database.driver}, seed ${SEED}): ${NUM_RUNS} runs, ${accepted} accepted`);
  });

  it('accepts rule-abiding input with hostile strings and stores it verbatim', { timeout: 60_000 }, async () => {
    let unique = 0;
    await fc.assert(
      fc.asyncProperty(acceptableInput, async ([fields, externalTaskId]) => {
        unique += 1;
        const input = { ...fields, externalTaskId: `${externalTaskId}#${unique}` };
        const result = expectTypedOutcome(await create(input), input);
        expect(result.__typename, JSON.stringify(result)).toBe('CreateOmniVideoSuccess');
        if (result.__typename === 'CreateOmniVideoSuccess') await expectStoredVerbatim(result.task, input);
      }),
      { numRuns: Math.ceil(NUM_RUNS / 2), seed: SEED, interruptAfterTimeLimit: 50_000 },
    );
  });

  const HOSTILE_PROMPTS: [string, string][] = [
    ['SQL', "Robert'); DROP TABLE omni_tasks; -- and ' OR 1=1; SELECT pg_sleep(10); $$ \\' E'\\x41'"],
    ['HTML', '<script>alert(document.cookie)</script><img src=x onerror="alert(1)"></textarea>&lt;&amp;&#x27;'],
    ['control characters', 'a\tb\nc\r\nd\u0007e\u0008f\u000bg\u000ch\u001b[31mred\u001b[0m\u007f\u0085\u009f'],
    ['line and paragraph separators, bidi and zero-width', 'x\u2028y\u2029z \u202edesrever\u202c \u200b\u200d\ufeff'],
    ['emoji and combining marks', 'A 🦊 on 🏔️, cafe\u0301, 👩🏽‍🚀'],
    ['template and format strings', '{{7*7}} ${7*7} #{7*7} %s%s%n %x'],
  ];

  it.each(HOSTILE_PROMPTS)('stores and returns a prompt with %s verbatim, and sends it upstream unchanged', async (_name, text) => {
    const input = { prompt: text, mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 };
    const result = expectTypedOutcome(await create(input), input);
    expect(result.__typename, JSON.stringify(result)).toBe('CreateOmniVideoSuccess');
    if (result.__typename === 'CreateOmniVideoSuccess') await expectStoredVerbatim(result.task, input);
  });

  it.each(UNSTORABLE)('stores %s verbatim or refuses it as InvalidInputError, never fails', async (_name, input) => {
    const result = expectTypedOutcome(await create(input), input);
    if (result.__typename === 'CreateOmniVideoSuccess') await expectStoredVerbatim(result.task, input);
  });

  it('passes reference URLs aimed at private addresses upstream untouched, and never fetches them', async () => {
    // A listener on loopback stands in for an internal service: the gateway must never call it.
    const hits: string[] = [];
    const trap = createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'image/png' }).end(png(640, 480));
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
    const trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
    try {
      const inputs = [
        {
          prompt: '<<<image_1>>> meets <<<image_2>>> near <<<video_1>>>',
          aspectRatio: 'RATIO_16_9',
          referenceImages: [
            { url: `${trapUrl}/image.png` },
            { url: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' },
            { url: 'http://[::1]:5432/' },
            { url: 'https://10.0.0.7:8443/admin?x=1#frag' },
          ],
          referenceVideos: [{ url: `${trapUrl}/video.mp4`, referType: 'FEATURE' }],
        },
        {
          prompt: 'private hosts everywhere',
          aspectRatio: 'RATIO_1_1',
          referenceImages: [
            { url: 'http://localhost:6379/' },
            { url: 'http://192.168.1.1/cgi-bin/luci' },
            { url: 'http://0.0.0.0:4000/graphql' },
            { url: 'http://metadata.google.internal/computeMetadata/v1/' },
          ],
          referenceVideos: [{ url: 'http://[fd00::1]/v.mp4', referType: 'FEATURE', keepOriginalSound: true }],
        },
        {
          prompt: 'a base video on loopback',
          referenceVideos: [{ url: `${trapUrl}/base.mp4`, referType: 'BASE' }],
        },
      ];
      for (const input of inputs) {
        const result = expectTypedOutcome(await create(input), input);
        expect(result.__typename, JSON.stringify(result)).toBe('CreateOmniVideoSuccess');
        if (result.__typename === 'CreateOmniVideoSuccess') await expectStoredVerbatim(result.task, input);
      }
      expect(hits, 'the gateway fetched a reference URL').toEqual([]);
    } finally {
      await new Promise<void>((resolve) => trap.close(() => resolve()));
    }
  });
});
