import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ALLOWED_MODEL_NAMES, createOmniVideoInputSchema } from '../../src/tasks/create-input.ts';
import type { CreateOmniVideoInput, NormalizedOmniRequest } from '../../src/tasks/create-input.ts';
import { jpeg, png } from './image-fixtures.ts';

const TEN_MB = 10 * 1024 * 1024;
const b64 = (bytes: Buffer) => bytes.toString('base64');
const text = { prompt: 'A fox runs through snow', aspectRatio: 'RATIO_16_9' } as const;
const urlImage = (type?: 'FIRST_FRAME' | 'END_FRAME') => ({ url: 'https://example.com/a.png', ...(type ? { type } : {}) });
const urlImages = (n: number) => Array.from({ length: n }, () => urlImage());
const elements = (n: number) => Array.from({ length: n }, (_, i) => ({ elementId: String(1000 + i) }));
const feature = { url: 'https://example.com/in.mp4', referType: 'FEATURE' } as const;
const baseVideo = { url: 'https://example.com/in.mp4', referType: 'BASE' } as const;
const inline = (bytes: Buffer) => ({ ...text, referenceImages: [{ base64: b64(bytes) }] });
const padTo = (bytes: Buffer, size: number) => Buffer.concat([bytes, Buffer.alloc(size - bytes.length)]);

function parse(input: CreateOmniVideoInput): NormalizedOmniRequest {
  const result = createOmniVideoInputSchema.safeParse(input);
  if (!result.success) throw new Error(`expected valid input, got ${JSON.stringify(result.error.issues, null, 1)}`);
  return result.data;
}

function issuesOf(input: CreateOmniVideoInput): { path: PropertyKey[]; message: string }[] {
  const result = createOmniVideoInputSchema.safeParse(input);
  if (result.success) throw new Error('expected invalid input, but it parsed');
  return result.error.issues.map((i) => ({ path: i.path, message: i.message }));
}

type Case = {
  rule: string;
  ok: CreateOmniVideoInput;
  bad: CreateOmniVideoInput;
  path: (string | number)[];
  message: string;
};

// biome-ignore format: a table, one case per line
const cases: Case[] = [
  // prompt
  { rule: 'prompt ≤ 2500 code points (an emoji counts once)', ok: { ...text, prompt: '😀'.repeat(2500) }, bad: { ...text, prompt: 'a'.repeat(2501) }, path: ['prompt'], message: 'at most 2500 characters' },
  { rule: 'prompt not whitespace only', ok: { ...text, prompt: ' x ' }, bad: { ...text, prompt: ' \n\t ' }, path: ['prompt'], message: 'must not be empty' },
  { rule: 'prompt not empty', ok: { ...text, prompt: 'x' }, bad: { ...text, prompt: '' }, path: ['prompt'], message: 'must not be empty' },
  { rule: '<<<image_N>>> must exist', ok: { ...text, prompt: '<<<image_1>>> walks', referenceImages: [urlImage()] }, bad: { ...text, prompt: '<<<image_2>>> walks', referenceImages: [urlImage()] }, path: ['prompt'], message: '<<<image_2>>>' },
  { rule: '<<<image_0>>> is not 1-based', ok: { ...text, prompt: '<<<image_1>>>', referenceImages: [urlImage()] }, bad: { ...text, prompt: '<<<image_0>>>', referenceImages: [urlImage()] }, path: ['prompt'], message: '<<<image_0>>>' },
  { rule: '<<<element_N>>> must exist', ok: { ...text, prompt: 'meet <<<element_2>>>', elements: elements(2) }, bad: { ...text, prompt: 'meet <<<element_1>>>' }, path: ['prompt'], message: '<<<element_1>>>, but 0 elements' },
  { rule: '<<<video_N>>> must exist', ok: { ...text, prompt: 'like <<<video_1>>>', referenceVideos: [feature] }, bad: { ...text, prompt: 'like <<<video_2>>>', referenceVideos: [feature] }, path: ['prompt'], message: '<<<video_2>>>, but 1 video is' },
  // counts
  { rule: 'images + elements ≤ 7', ok: { ...text, referenceImages: urlImages(3), elements: elements(4) }, bad: { ...text, referenceImages: urlImages(4), elements: elements(4) }, path: ['referenceImages'], message: 'at most 7' },
  { rule: 'elements alone ≤ 7', ok: { ...text, elements: elements(7) }, bad: { ...text, elements: elements(8) }, path: ['elements'], message: 'at most 7' },
  { rule: 'images + elements ≤ 4 with a video', ok: { ...text, referenceImages: urlImages(2), elements: elements(2), referenceVideos: [feature] }, bad: { ...text, referenceImages: urlImages(3), elements: elements(2), referenceVideos: [feature] }, path: ['referenceImages'], message: 'at most 4 when a reference video' },
  { rule: 'at most one reference video', ok: { ...text, referenceVideos: [feature] }, bad: { ...text, referenceVideos: [feature, feature] }, path: ['referenceVideos'], message: 'at most one reference video' },
  // frames
  { rule: 'END_FRAME needs FIRST_FRAME', ok: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME')] }, bad: { ...text, referenceImages: [urlImage('END_FRAME')] }, path: ['referenceImages', 0, 'type'], message: 'needs a FIRST_FRAME' },
  { rule: 'at most one FIRST_FRAME', ok: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage()] }, bad: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage('FIRST_FRAME')] }, path: ['referenceImages', 1, 'type'], message: 'at most one FIRST_FRAME' },
  { rule: 'at most one END_FRAME', ok: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME')] }, bad: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME'), urlImage('END_FRAME')] }, path: ['referenceImages', 2, 'type'], message: 'at most one END_FRAME' },
  { rule: 'a first + end frame pair rules out elements', ok: { prompt: '<<<element_1>>> dances', referenceImages: [urlImage('FIRST_FRAME')], elements: [{ elementId: '42' }] }, bad: { prompt: '<<<element_1>>> dances', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME')], elements: [{ elementId: '42' }] }, path: ['elements'], message: 'elements cannot be combined' },
  { rule: 'more than two images rule out an END_FRAME', ok: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage(), urlImage()] }, bad: { prompt: 'dance', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME'), urlImage()] }, path: ['referenceImages', 1, 'type'], message: 'at most two images' },
  { rule: 'a base video rules out frames', ok: { prompt: 'edit', referenceImages: [urlImage()], referenceVideos: [baseVideo] }, bad: { prompt: 'edit', referenceImages: [urlImage('FIRST_FRAME')], referenceVideos: [baseVideo] }, path: ['referenceImages', 0, 'type'], message: 'base video' },
  // duration
  { rule: 'duration ≤ 10', ok: { ...text, durationSeconds: 10 }, bad: { ...text, durationSeconds: 11 }, path: ['durationSeconds'], message: 'integer from 3 to 10' },
  { rule: 'duration ≥ 3', ok: { ...text, referenceImages: [urlImage()], durationSeconds: 3 }, bad: { ...text, referenceImages: [urlImage()], durationSeconds: 2 }, path: ['durationSeconds'], message: 'integer from 3 to 10' },
  { rule: 'duration is an integer', ok: { ...text, durationSeconds: 5 }, bad: { ...text, durationSeconds: 5.5 }, path: ['durationSeconds'], message: 'integer from 3 to 10' },
  { rule: 'text-to-video: 5 or 10 only', ok: { ...text, durationSeconds: 10 }, bad: { ...text, durationSeconds: 7 }, path: ['durationSeconds'], message: '5 or 10 for text-to-video' },
  { rule: 'first-frame-only: 5 or 10 only', ok: { prompt: 'go', referenceImages: [urlImage('FIRST_FRAME'), urlImage()], durationSeconds: 7 }, bad: { prompt: 'go', referenceImages: [urlImage('FIRST_FRAME')], durationSeconds: 7 }, path: ['durationSeconds'], message: '5 or 10 for a video from a first frame only' },
  { rule: 'first + end frame: 3–10 allowed', ok: { prompt: 'go', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME')], durationSeconds: 7 }, bad: { prompt: 'go', referenceImages: [urlImage('FIRST_FRAME'), urlImage('END_FRAME')], durationSeconds: 12 }, path: ['durationSeconds'], message: 'integer from 3 to 10' },
  { rule: 'base video: any 3–10 accepted, not limited to 5/10', ok: { prompt: 'edit', referenceVideos: [baseVideo], durationSeconds: 7 }, bad: { prompt: 'edit', referenceVideos: [baseVideo], durationSeconds: 0 }, path: ['durationSeconds'], message: 'integer from 3 to 10' },
  // aspect ratio
  { rule: 'aspectRatio required for text-to-video', ok: text, bad: { prompt: 'a fox' }, path: ['aspectRatio'], message: 'aspectRatio is required' },
  { rule: 'aspectRatio optional with a first frame', ok: { prompt: 'go', referenceImages: [urlImage('FIRST_FRAME')] }, bad: { prompt: 'go', referenceImages: [urlImage()] }, path: ['aspectRatio'], message: 'aspectRatio is required' },
  { rule: 'aspectRatio optional with a base video only', ok: { prompt: 'edit', referenceVideos: [baseVideo] }, bad: { prompt: 'restyle', referenceVideos: [feature] }, path: ['aspectRatio'], message: 'aspectRatio is required' },
  // reference images
  { rule: 'image needs url or base64', ok: { ...text, referenceImages: [urlImage()] }, bad: { ...text, referenceImages: [urlImage(), { type: null }] }, path: ['referenceImages', 1], message: 'exactly one of url and base64' },
  { rule: 'image has not both url and base64', ok: inline(png(400, 400)), bad: { ...text, referenceImages: [{ url: 'https://example.com/a.png', base64: b64(png(400, 400)) }] }, path: ['referenceImages', 0], message: 'exactly one of url and base64' },
  { rule: 'image url is http(s)', ok: { ...text, referenceImages: [{ url: 'http://example.com/a.png' }] }, bad: { ...text, referenceImages: [{ url: 'ftp://example.com/a.png' }] }, path: ['referenceImages', 0, 'url'], message: 'http or https' },
  { rule: 'image url parses', ok: { ...text, referenceImages: [{ url: 'https://example.com/a%20b.png' }] }, bad: { ...text, referenceImages: [{ url: 'not a url' }] }, path: ['referenceImages', 0, 'url'], message: 'http or https' },
  { rule: 'base64 alphabet is strict', ok: inline(png(400, 400)), bad: { ...text, referenceImages: [{ base64: 'iVBORw0K$$$$' }] }, path: ['referenceImages', 0, 'base64'], message: 'standard alphabet' },
  { rule: 'base64 must be padded', ok: inline(padTo(png(400, 400), 46)), bad: { ...text, referenceImages: [{ base64: b64(padTo(png(400, 400), 46)).replace(/=+$/, '') }] }, path: ['referenceImages', 0, 'base64'], message: 'padding' },
  { rule: 'base64 without whitespace', ok: inline(png(400, 400)), bad: { ...text, referenceImages: [{ base64: `${b64(png(400, 400)).slice(0, 8)}\n${b64(png(400, 400)).slice(8)}` }] }, path: ['referenceImages', 0, 'base64'], message: 'no whitespace' },
  { rule: 'base64 not empty', ok: inline(png(400, 400)), bad: { ...text, referenceImages: [{ base64: '' }] }, path: ['referenceImages', 0, 'base64'], message: 'empty' },
  { rule: 'bytes are PNG or JPEG', ok: inline(jpeg(400, 400)), bad: inline(Buffer.from('GIF89a\x01\x00\x01\x00 not really', 'latin1')), path: ['referenceImages', 0, 'base64'], message: 'PNG or JPEG' },
  { rule: 'image ≤ 10 MB decoded', ok: inline(padTo(png(400, 400), TEN_MB)), bad: inline(padTo(png(400, 400), TEN_MB + 1)), path: ['referenceImages', 0, 'base64'], message: 'the limit is 10 MB' },
  { rule: 'width ≥ 300 px', ok: inline(png(300, 300)), bad: inline(png(299, 400)), path: ['referenceImages', 0, 'base64'], message: 'at least 300 px' },
  { rule: 'height ≥ 300 px (JPEG)', ok: inline(jpeg(400, 300)), bad: inline(jpeg(400, 299)), path: ['referenceImages', 0, 'base64'], message: 'at least 300 px' },
  { rule: 'aspect ≤ 2.5:1', ok: inline(png(750, 300)), bad: inline(png(900, 300)), path: ['referenceImages', 0, 'base64'], message: 'between 1:2.5 and 2.5:1' },
  { rule: 'aspect ≥ 1:2.5', ok: inline(jpeg(300, 750)), bad: inline(jpeg(300, 900)), path: ['referenceImages', 0, 'base64'], message: 'between 1:2.5 and 2.5:1' },
  { rule: 'data: URL must be base64', ok: { ...text, referenceImages: [{ base64: `data:image/png;base64,${b64(png(400, 400))}` }] }, bad: { ...text, referenceImages: [{ base64: 'data:image/png,rawbytes' }] }, path: ['referenceImages', 0, 'base64'], message: 'base64-encoded' },
  { rule: 'data: URL is judged by its bytes', ok: { ...text, referenceImages: [{ base64: `data:image/gif;base64,${b64(jpeg(400, 400))}` }] }, bad: { ...text, referenceImages: [{ base64: `data:image/png;base64,${b64(Buffer.from('plain text, not an image'))}` }] }, path: ['referenceImages', 0, 'base64'], message: 'PNG or JPEG' },
  { rule: 'JPEG frame header before the scan', ok: inline(jpeg(400, 400, { sof: 0xc2 })), bad: inline(jpeg(400, 400, { frameAfterScan: true })), path: ['referenceImages', 0, 'base64'], message: 'corrupt JPEG' },
  { rule: 'JPEG frame header complete', ok: inline(jpeg(400, 400, { sof: 0xc1 })), bad: inline(jpeg(400, 400).subarray(0, 115)), path: ['referenceImages', 0, 'base64'], message: 'corrupt JPEG' },
  { rule: 'PNG starts with IHDR', ok: inline(png(400, 400)), bad: inline(Buffer.concat([png(400, 400).subarray(0, 12), Buffer.from('IDAT'), png(400, 400).subarray(16)])), path: ['referenceImages', 0, 'base64'], message: 'corrupt PNG' },
  // videos, model, ids
  { rule: 'video url is http(s)', ok: { ...text, referenceVideos: [{ ...feature, url: 'http://example.com/v.mov' }] }, bad: { ...text, referenceVideos: [{ ...feature, url: 'rtmp://example.com/live' }] }, path: ['referenceVideos', 0, 'url'], message: 'http or https' },
  { rule: 'modelName allowed', ok: { ...text, modelName: 'kling-video-o1' }, bad: { ...text, modelName: 'kling-v3-omni' }, path: ['modelName'], message: 'must be one of: kling-video-o1' },
  { rule: 'externalTaskId ≤ 128', ok: { ...text, externalTaskId: 'é'.repeat(128) }, bad: { ...text, externalTaskId: 'x'.repeat(129) }, path: ['externalTaskId'], message: '1 to 128 characters' },
  { rule: 'externalTaskId not empty', ok: { ...text, externalTaskId: 'a' }, bad: { ...text, externalTaskId: '' }, path: ['externalTaskId'], message: '1 to 128 characters' },
  { rule: 'externalTaskId printable', ok: { ...text, externalTaskId: 'order 42 / ünï' }, bad: { ...text, externalTaskId: 'order\n42' }, path: ['externalTaskId'], message: 'control characters' },
  { rule: 'idempotencyKey ≤ 128', ok: { ...text, idempotencyKey: 'k'.repeat(128) }, bad: { ...text, idempotencyKey: 'k'.repeat(129) }, path: ['idempotencyKey'], message: '1 to 128 characters' },
  { rule: 'idempotencyKey printable', ok: { ...text, idempotencyKey: 'key-1' }, bad: { ...text, idempotencyKey: 'key\u00001' }, path: ['idempotencyKey'], message: 'control characters' },
  { rule: 'elementId is digits', ok: { ...text, elements: [{ elementId: '9223372036854775807' }] }, bad: { ...text, elements: [{ elementId: 'abc' }] }, path: ['elements', 0, 'elementId'], message: 'string of digits' },
  { rule: 'elementId not empty', ok: { ...text, elements: [{ elementId: '0' }] }, bad: { ...text, elements: [{ elementId: '' }] }, path: ['elements', 0, 'elementId'], message: 'non-empty string of digits' },
  { rule: 'elementId fits a long', ok: { ...text, elements: [{ elementId: '123456789012345678' }] }, bad: { ...text, elements: [{ elementId: '9223372036854775808' }] }, path: ['elements', 0, 'elementId'], message: '64-bit' },
];

describe('createOmniVideoInputSchema rules', () => {
  it.each(cases)('$rule', ({ ok, bad, path, message }) => {
    expect(() => parse(ok)).not.toThrow();
    const issues = issuesOf(bad);
    const match = issues.find((i) => JSON.stringify(i.path) === JSON.stringify(path) && i.message.includes(message));
    expect(match, `wanted ${JSON.stringify(path)} ~ "${message}", got ${JSON.stringify(issues)}`).toBeDefined();
  });

  it('rejects unknown enum values with a path', () => {
    const issues = issuesOf({ ...text, mode: 'ULTRA' as 'PRO' });
    expect(issues.map((i) => i.path)).toEqual([['mode']]);
  });

  it('reports every problem of an input in one pass', () => {
    const issues = issuesOf({
      prompt: `${'a'.repeat(2501)} <<<video_1>>>`,
      durationSeconds: 42,
      referenceImages: [{ url: 'ftp://x' }, { base64: b64(png(100, 100)) }, { type: 'END_FRAME' }],
      elements: [{ elementId: 'x1' }],
      modelName: 'other',
    });
    const paths = issues.map((i) => JSON.stringify(i.path));
    for (const expected of [
      ['prompt'],
      ['durationSeconds'],
      ['referenceImages', 0, 'url'],
      ['referenceImages', 1, 'base64'],
      ['referenceImages', 2],
      ['referenceImages', 2, 'type'],
      ['elements', 0, 'elementId'],
      ['modelName'],
      ['aspectRatio'],
    ]) {
      expect(paths, JSON.stringify(issues)).toContain(JSON.stringify(expected));
    }
    expect(issues.filter((i) => i.path[0] === 'prompt')).toHaveLength(2);
  });
});

describe('normalized request', () => {
  it('applies the defaults for text-to-video', () => {
    expect(parse(text)).toEqual({
      prompt: 'A fox runs through snow',
      modelName: 'kling-video-o1',
      mode: 'PRO',
      aspectRatio: 'RATIO_16_9',
      durationSeconds: 5,
      referenceImages: [],
      elements: [],
      referenceVideos: [],
      externalTaskId: null,
      idempotencyKey: null,
      priority: 'NORMAL',
      cancelAfterSeconds: null,
    });
    expect(ALLOWED_MODEL_NAMES).toEqual(['kling-video-o1']);
  });

  it('accepts null for every optional field', () => {
    const req = parse({
      ...text,
      modelName: null,
      mode: null,
      durationSeconds: null,
      referenceImages: null,
      elements: null,
      referenceVideos: null,
      externalTaskId: null,
      idempotencyKey: null,
    });
    expect(req).toMatchObject({ modelName: 'kling-video-o1', mode: 'PRO', durationSeconds: 5, referenceImages: [] });
  });

  it('drops aspectRatio with a first frame, and aspectRatio and duration with a base video', () => {
    expect(parse({ ...text, referenceImages: [urlImage('FIRST_FRAME')], durationSeconds: 10 })).toMatchObject({
      aspectRatio: null,
      durationSeconds: 10,
    });
    const edit = parse({ ...text, durationSeconds: 7, referenceVideos: [baseVideo] });
    expect(edit).toMatchObject({ aspectRatio: null, durationSeconds: null });
    expect(edit.referenceVideos).toEqual([{ index: 1, url: baseVideo.url, referType: 'BASE', keepOriginalSound: false }]);
  });

  it('decodes inline images: strips the data: prefix, hashes and measures the bytes', () => {
    const pngBytes = png(1280, 720);
    const jpegBytes = jpeg(640, 480, { sof: 0xc2 });
    const req = parse({
      ...text,
      prompt: '<<<image_1>>> meets <<<image_2>>> and <<<element_1>>>',
      referenceImages: [{ base64: `data:image/png;base64,${b64(pngBytes)}` }, { base64: b64(jpegBytes), type: null }, urlImage()],
      elements: [{ elementId: '18446744073709551' }],
    });
    expect(req.referenceImages).toEqual([
      {
        index: 1,
        url: null,
        base64: b64(pngBytes),
        sha256: createHash('sha256').update(pngBytes).digest('hex'),
        byteSize: pngBytes.length,
        format: 'png',
        width: 1280,
        height: 720,
        type: null,
      },
      {
        index: 2,
        url: null,
        base64: b64(jpegBytes),
        sha256: createHash('sha256').update(jpegBytes).digest('hex'),
        byteSize: jpegBytes.length,
        format: 'jpeg',
        width: 640,
        height: 480,
        type: null,
      },
      {
        index: 3,
        url: 'https://example.com/a.png',
        base64: null,
        sha256: null,
        byteSize: null,
        format: null,
        width: null,
        height: null,
        type: null,
      },
    ]);
    expect(req.elements).toEqual([{ index: 1, elementId: '18446744073709551' }]);
  });
});

describe('list lengths come before decoding', () => {
  it('eight inline images are refused by their count, none of them decoded', () => {
    // Not one of these is valid base64: had any been decoded, its own problem would be reported.
    const parsed = createOmniVideoInputSchema.safeParse({
      prompt: 'p',
      aspectRatio: 'RATIO_16_9',
      referenceImages: Array.from({ length: 8 }, () => ({ base64: '!'.repeat(1_000) })),
    });
    expect(parsed.success).toBe(false);
    const issues = parsed.success ? [] : parsed.error.issues;
    expect(issues.map((issue) => [issue.path.join('.'), issue.message])).toEqual([
      ['referenceImages', 'reference images and elements together must be at most 7'],
    ]);
  });
});
