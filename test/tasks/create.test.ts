import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/database.ts';
import { png } from './image-fixtures.ts';
import { createTask, createTenant, createVideo, TEXT_TO_VIDEO, taskUuid } from '../support/fixtures.ts';
import type { TaskView, TestTenant } from '../support/fixtures.ts';
import { startGateway } from '../support/gateway.ts';
import type { TestGateway } from '../support/gateway.ts';
import { waitFor } from '../reliability/support.ts';

let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  // A create must be answered before its task moves on upstream (the tests below read SUBMITTED at
  // version 2): with the default 50 ms, a create slowed by a busy machine saw the callback first.
  gateway = await startGateway({ delays: { processingMs: 1_000, finishMs: 1_050 } });
  tenant = await createTenant(gateway, 'Creator');
});
afterAll(async () => {
  await gateway?.stop();
});
beforeEach(() => {
  gateway.upstreamRequests.length = 0;
  gateway.simulator.faults.length = 0;
});

const CREATE_PATH = '/kling/v1/videos/omni-video';

function createsSent() {
  return gateway.upstreamRequests.filter((request) => request.method === 'POST' && request.path === CREATE_PATH);
}

async function taskCount(): Promise<number> {
  const rows = await queryRows<{ count: number }>(gateway.database.db, sql`select count(*)::int as count from omni_tasks`);
  return Number(rows[0]?.count);
}

const inlineImage = png(640, 480);
const inlineImageBase64 = inlineImage.toString('base64');

describe('createOmniVideo sends the upstream the body of the reference, field for field', () => {
  const callbackUrl = (id: string) => expect.stringMatching(new RegExp(`^${gateway.url}/webhooks/kling/${id}/[A-Za-z0-9_-]{43}$`));

  it.each([
    {
      name: 'text-to-video',
      input: TEXT_TO_VIDEO,
      body: { model_name: 'kling-video-o1', prompt: 'A fox runs through snow', mode: 'std', aspect_ratio: '16:9', duration: '5' },
      readBack: { aspectRatio: 'RATIO_16_9', durationSeconds: 5, mode: 'STD' },
    },
    {
      name: 'image references by URL and inline base64',
      input: {
        prompt: '<<<image_1>>> walks in Tokyo; style like <<<image_2>>>',
        referenceImages: [{ url: 'https://images.example/a.png' }, { base64: `data:image/png;base64,${inlineImageBase64}` }],
        aspectRatio: 'RATIO_1_1',
        durationSeconds: 7,
      },
      body: {
        model_name: 'kling-video-o1',
        prompt: '<<<image_1>>> walks in Tokyo; style like <<<image_2>>>',
        image_list: [{ image_url: 'https://images.example/a.png' }, { image_url: inlineImageBase64 }],
        mode: 'pro',
        aspect_ratio: '1:1',
        duration: '7',
      },
      readBack: {
        aspectRatio: 'RATIO_1_1',
        durationSeconds: 7,
        mode: 'PRO',
        referenceImages: [
          { index: 1, url: 'https://images.example/a.png', type: null, sha256: null, byteSize: null },
          {
            index: 2,
            url: null,
            type: null,
            sha256: createHash('sha256').update(inlineImage).digest('hex'),
            byteSize: inlineImage.length,
          },
        ],
      },
    },
    {
      name: 'first and end frame',
      input: {
        prompt: 'The person dances',
        referenceImages: [
          { url: 'https://images.example/a.png', type: 'FIRST_FRAME' },
          { url: 'https://images.example/b.png', type: 'END_FRAME' },
        ],
        mode: 'PRO',
        aspectRatio: 'RATIO_16_9',
      },
      body: {
        model_name: 'kling-video-o1',
        prompt: 'The person dances',
        image_list: [
          { image_url: 'https://images.example/a.png', type: 'first_frame' },
          { image_url: 'https://images.example/b.png', type: 'end_frame' },
        ],
        mode: 'pro',
        duration: '5',
      },
      // With a first frame the aspect ratio is accepted but not sent, and reads back as null.
      readBack: { aspectRatio: null, durationSeconds: 5 },
    },
    {
      name: 'element reference',
      input: { prompt: '<<<element_1>>> waves at the camera', elements: [{ elementId: '123456' }], aspectRatio: 'RATIO_9_16' },
      body: {
        model_name: 'kling-video-o1',
        prompt: '<<<element_1>>> waves at the camera',
        element_list: [{ element_id: '123456' }],
        mode: 'pro',
        aspect_ratio: '9:16',
        duration: '5',
      },
      readBack: { elements: [{ index: 1, elementId: '123456' }] },
    },
    {
      name: 'feature reference video',
      input: {
        prompt: 'Generate the next shot after <<<video_1>>>',
        referenceVideos: [{ url: 'https://videos.example/in.mp4', referType: 'FEATURE' }],
        aspectRatio: 'RATIO_16_9',
        durationSeconds: 5,
      },
      body: {
        model_name: 'kling-video-o1',
        prompt: 'Generate the next shot after <<<video_1>>>',
        video_list: [{ video_url: 'https://videos.example/in.mp4', refer_type: 'feature', keep_original_sound: 'no' }],
        mode: 'pro',
        aspect_ratio: '16:9',
        duration: '5',
      },
      readBack: {
        referenceVideos: [{ index: 1, url: 'https://videos.example/in.mp4', referType: 'FEATURE', keepOriginalSound: false }],
      },
    },
    {
      name: 'base video edit',
      input: {
        prompt: 'Put the crown from <<<image_1>>> on the girl in <<<video_1>>>',
        referenceImages: [{ url: 'https://images.example/crown.png' }],
        referenceVideos: [{ url: 'https://videos.example/in.mp4', referType: 'BASE', keepOriginalSound: true }],
        aspectRatio: 'RATIO_16_9',
        durationSeconds: 10,
        externalTaskId: 'job-42',
      },
      body: {
        model_name: 'kling-video-o1',
        prompt: 'Put the crown from <<<image_1>>> on the girl in <<<video_1>>>',
        image_list: [{ image_url: 'https://images.example/crown.png' }],
        video_list: [{ video_url: 'https://videos.example/in.mp4', refer_type: 'base', keep_original_sound: 'yes' }],
        mode: 'pro',
      },
      // The client's externalTaskId is its own reference: stored and returned, never sent upstream.
      readBack: { aspectRatio: null, durationSeconds: null, externalTaskId: 'job-42' },
    },
  ])('$name', async ({ input, body, readBack }) => {
    const task = await createTask(gateway, tenant, input);
    const id = taskUuid(task.id);
    expect(createsSent().map((request) => request.body)).toEqual([{ ...body, callback_url: callbackUrl(id), external_task_id: id }]);
    expect(task).toMatchObject({ status: 'SUBMITTED', version: 2, ...readBack });
    expect(task.upstreamTaskId).toEqual(expect.any(String));
  });
});

describe('invalid input', () => {
  // The tasks of the tests above finish upstream and call back, and a final callback is confirmed by
  // an upstream read: let them settle first, so that a request seen below can only come from the input.
  beforeEach(async () => {
    const unfinished = async () => {
      const query = sql`select count(*)::int as count from omni_tasks where status not in ('SUCCEEDED', 'FAILED')`;
      return Number((await queryRows<{ count: number }>(gateway.database.db, query))[0]?.count);
    };
    await waitFor('the earlier tasks to finish', async () => (await unfinished()) === 0);
    gateway.upstreamRequests.length = 0;
  });
  const tooSmall = png(299, 400).toString('base64');
  const tooWide = png(900, 300).toString('base64');
  it.each([
    ['an empty prompt', { ...TEXT_TO_VIDEO, prompt: '' }, ['input', 'prompt']],
    ['a prompt over 2500 characters', { ...TEXT_TO_VIDEO, prompt: 'x'.repeat(2501) }, ['input', 'prompt']],
    ['a reference to a missing image', { ...TEXT_TO_VIDEO, prompt: 'see <<<image_1>>>' }, ['input', 'prompt']],
    [
      'eight images',
      {
        ...TEXT_TO_VIDEO,
        durationSeconds: 5,
        referenceImages: Array.from({ length: 8 }, (_, i) => ({ url: `https://i.example/${i}.png` })),
      },
      ['input', 'referenceImages'],
    ],
    [
      'five images with a video',
      {
        ...TEXT_TO_VIDEO,
        referenceImages: Array.from({ length: 5 }, (_, i) => ({ url: `https://i.example/${i}.png` })),
        referenceVideos: [{ url: 'https://v.example/a.mp4', referType: 'FEATURE' }],
      },
      ['input', 'referenceImages'],
    ],
    [
      'two videos',
      {
        ...TEXT_TO_VIDEO,
        referenceVideos: [
          { url: 'https://v.example/a.mp4', referType: 'FEATURE' },
          { url: 'https://v.example/b.mp4', referType: 'FEATURE' },
        ],
      },
      ['input', 'referenceVideos'],
    ],
    [
      'an end frame alone',
      { ...TEXT_TO_VIDEO, referenceImages: [{ url: 'https://i.example/e.png', type: 'END_FRAME' }] },
      ['input', 'referenceImages', '0', 'type'],
    ],
    ['7 seconds of text-to-video', { ...TEXT_TO_VIDEO, durationSeconds: 7 }, ['input', 'durationSeconds']],
    ['11 seconds', { ...TEXT_TO_VIDEO, durationSeconds: 11 }, ['input', 'durationSeconds']],
    ['no aspect ratio for text-to-video', { prompt: 'A fox' }, ['input', 'aspectRatio']],
    [
      'a first frame with a base video',
      {
        prompt: 'edit',
        referenceImages: [{ url: 'https://i.example/f.png', type: 'FIRST_FRAME' }],
        referenceVideos: [{ url: 'https://v.example/a.mp4', referType: 'BASE' }],
      },
      ['input', 'referenceImages', '0', 'type'],
    ],
    [
      'an image with url and base64',
      { ...TEXT_TO_VIDEO, referenceImages: [{ url: 'https://i.example/a.png', base64: tooSmall }] },
      ['input', 'referenceImages', '0'],
    ],
    ['an image with neither url nor base64', { ...TEXT_TO_VIDEO, referenceImages: [{}] }, ['input', 'referenceImages', '0']],
    [
      'an ftp image URL',
      { ...TEXT_TO_VIDEO, referenceImages: [{ url: 'ftp://i.example/a.png' }] },
      ['input', 'referenceImages', '0', 'url'],
    ],
    [
      'base64 that is not an image',
      { ...TEXT_TO_VIDEO, referenceImages: [{ base64: Buffer.from('hello world').toString('base64') }] },
      ['input', 'referenceImages', '0', 'base64'],
    ],
    ['an image under 300 px', { ...TEXT_TO_VIDEO, referenceImages: [{ base64: tooSmall }] }, ['input', 'referenceImages', '0', 'base64']],
    [
      'an image wider than 2.5:1',
      { ...TEXT_TO_VIDEO, referenceImages: [{ base64: tooWide }] },
      ['input', 'referenceImages', '0', 'base64'],
    ],
    [
      'an ftp video URL',
      { ...TEXT_TO_VIDEO, referenceVideos: [{ url: 'ftp://v.example/a.mp4', referType: 'FEATURE' }] },
      ['input', 'referenceVideos', '0', 'url'],
    ],
    ['an unknown model', { ...TEXT_TO_VIDEO, modelName: 'kling-v1' }, ['input', 'modelName']],
    ['a non-numeric element id', { ...TEXT_TO_VIDEO, elements: [{ elementId: 'abc' }] }, ['input', 'elements', '0', 'elementId']],
  ])('%s is an InvalidInputError with its path, and nothing is written or sent', async (_name, input, path) => {
    const before = await taskCount();
    const result = await createVideo(gateway, tenant, input);
    expect(result.__typename).toBe('InvalidInputError');
    if (result.__typename !== 'InvalidInputError') return;
    expect(result.issues.map((issue) => issue.path)).toContainEqual(path);
    expect(result.issues.every((issue) => issue.message.length > 0)).toBe(true);
    expect(await taskCount()).toBe(before);
    expect(gateway.upstreamRequests).toEqual([]);
  });
});

describe('idempotency and client references', () => {
  it('ten concurrent creates with one idempotency key give one task and one upstream call', async () => {
    const input = { ...TEXT_TO_VIDEO, idempotencyKey: 'retry-safe-1' };
    const results = await Promise.all(Array.from({ length: 10 }, () => createTask(gateway, tenant, input)));
    expect(new Set(results.map((task) => task.id)).size).toBe(1);
    const id = taskUuid(results[0]!.id);
    expect(createsSent()).toHaveLength(1);
    expect(gateway.simulator.stats.byExternalTaskId[id]).toEqual({ requests: 1, accepted: 1 });
  });

  it('ten concurrent creates with one idempotency key and ten prompts: one task, and nine InvalidInputErrors', async () => {
    const before = await taskCount();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        createVideo(gateway, tenant, { ...TEXT_TO_VIDEO, prompt: `Take ${i}`, idempotencyKey: 'raced-key' }),
      ),
    );
    const made = results.filter((result) => result.__typename === 'CreateOmniVideoSuccess');
    expect(made).toHaveLength(1);
    expect(results.filter((result) => result.__typename === 'InvalidInputError')).toHaveLength(9);
    expect(await taskCount()).toBe(before + 1);
    expect(createsSent()).toHaveLength(1);
  });

  it('a reused idempotency key with another input is an InvalidInputError', async () => {
    await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, idempotencyKey: 'retry-safe-2' });
    const before = await taskCount();
    const result = await createVideo(gateway, tenant, { ...TEXT_TO_VIDEO, prompt: 'Something else', idempotencyKey: 'retry-safe-2' });
    expect(result).toMatchObject({
      __typename: 'InvalidInputError',
      issues: [{ path: ['input', 'idempotencyKey'] }],
    });
    expect(await taskCount()).toBe(before);
  });

  describe('a reused idempotency key with any one field of the request changed is refused', () => {
    const otherImageBase64 = png(640, 482).toString('base64');
    const BASE = {
      prompt: '<<<element_1>>> and <<<image_1>>> in the snow',
      mode: 'STD',
      aspectRatio: 'RATIO_16_9',
      durationSeconds: 7,
      referenceImages: [{ url: 'https://images.example/a.png' }, { base64: inlineImageBase64 }],
      elements: [{ elementId: '42' }],
      referenceVideos: [{ url: 'https://videos.example/in.mp4', referType: 'FEATURE', keepOriginalSound: false }],
      externalTaskId: 'fingerprint-1',
      idempotencyKey: 'fingerprint',
    };
    const [url, inline] = BASE.referenceImages;
    const video = BASE.referenceVideos[0]!;
    const changes: [string, Record<string, unknown>][] = [
      ['prompt', { prompt: '<<<element_1>>> and <<<image_1>>> in the rain' }],
      ['mode', { mode: 'PRO' }],
      ['aspectRatio', { aspectRatio: 'RATIO_1_1' }],
      ['durationSeconds', { durationSeconds: 8 }],
      ['a reference image url', { referenceImages: [{ url: 'https://images.example/b.png' }, inline] }],
      ['an inline reference image', { referenceImages: [url, { base64: otherImageBase64 }] }],
      ['the order of the reference images', { referenceImages: [inline, url] }],
      ['a reference image type', { referenceImages: [{ ...url, type: 'FIRST_FRAME' }, inline] }],
      ['an elementId', { elements: [{ elementId: '43' }] }],
      ['one element more', { elements: [{ elementId: '42' }, { elementId: '43' }] }],
      ['the reference video url', { referenceVideos: [{ ...video, url: 'https://videos.example/other.mp4' }] }],
      ['keepOriginalSound', { referenceVideos: [{ ...video, keepOriginalSound: true }] }],
      ['referType', { referenceVideos: [{ ...video, referType: 'BASE' }] }],
      ['no reference video', { referenceVideos: [] }],
      ['externalTaskId', { externalTaskId: 'fingerprint-2' }],
      ['no externalTaskId', { externalTaskId: null }],
    ];
    let original: TaskView;
    beforeAll(async () => {
      original = await createTask(gateway, tenant, BASE);
    });

    it.each(changes)('%s', async (_field, change) => {
      const before = await taskCount();
      const result = await createVideo(gateway, tenant, { ...BASE, ...change });
      expect(result).toEqual({
        __typename: 'InvalidInputError',
        message: 'This idempotencyKey was already used with a different request.',
        issues: [{ path: ['input', 'idempotencyKey'], message: 'already used with a different request' }],
      });
      expect(await taskCount()).toBe(before);
      expect(createsSent()).toEqual([]);
    });

    it('while the same request, spelled with its defaults or not, gets the same task and sends nothing', async () => {
      for (const same of [
        BASE,
        { ...BASE, modelName: 'kling-video-o1' },
        { ...BASE, referenceVideos: [{ ...video, keepOriginalSound: null }] },
      ]) {
        const result = await createVideo(gateway, tenant, same);
        expect(result).toMatchObject({ __typename: 'CreateOmniVideoSuccess', task: { id: original.id } });
      }
      expect(createsSent()).toEqual([]);
    });
  });

  it('a duplicate externalTaskId within a tenant is an InvalidInputError; another tenant may reuse it', async () => {
    await createTask(gateway, tenant, { ...TEXT_TO_VIDEO, externalTaskId: 'order-7' });
    const before = await taskCount();
    const duplicate = await createVideo(gateway, tenant, { ...TEXT_TO_VIDEO, externalTaskId: 'order-7' });
    expect(duplicate).toMatchObject({
      __typename: 'InvalidInputError',
      message: 'Another task of this tenant already has this externalTaskId.',
      issues: [{ path: ['input', 'externalTaskId'], message: 'already used by another task' }],
    });
    expect(await taskCount()).toBe(before);
    const other = await createTenant(gateway, 'Other');
    expect((await createTask(gateway, other, { ...TEXT_TO_VIDEO, externalTaskId: 'order-7' })).externalTaskId).toBe('order-7');
  });
});

describe('upstream refusals', () => {
  it('a content refusal (400/1301) fails the task and answers UpstreamError, not retryable', async () => {
    gateway.simulator.faults.push({ op: 'create', kind: 'http400_1301' });
    const result = await createVideo(gateway, tenant, { ...TEXT_TO_VIDEO, externalTaskId: 'refused-1' });
    expect(result).toMatchObject({ __typename: 'UpstreamError', code: 'UPSTREAM_CONTENT_REJECTED', retryable: false });
    expect(createsSent()).toHaveLength(1);
    const rows = await queryRows<{ status: string; status_message: string }>(
      gateway.database.db,
      sql`select status, status_message from omni_tasks where external_task_id = 'refused-1'`,
    );
    expect(rows).toEqual([{ status: 'FAILED', status_message: expect.stringContaining('UPSTREAM_CONTENT_REJECTED') }]);
  });

  it('an upstream that keeps failing with 5xx leaves the task PENDING and answers success', async () => {
    gateway.simulator.faults.push({ op: 'create', kind: 'http500', count: 50 }, { op: 'get', kind: 'http500', count: 50 });
    const task = await createTask(gateway, tenant, TEXT_TO_VIDEO);
    expect(task.status).toBe('PENDING');
    expect(task.upstreamTaskId).toBeNull();
    expect(task.statusMessage).toContain('Waiting to reach the upstream');
  });
});
