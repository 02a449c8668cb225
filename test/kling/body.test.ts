import { describe, expect, it } from 'vitest';
import { toUpstreamBody } from '../../src/kling/body.ts';
import { createOmniVideoInputSchema } from '../../src/tasks/create-input.ts';
import type { CreateOmniVideoInput, NormalizedOmniRequest } from '../../src/tasks/create-input.ts';
import { png } from '../tasks/image-fixtures.ts';

const b64 = (bytes: Buffer) => bytes.toString('base64');

// The requests come from the real input schema: each case is what a client's input turns into.
function parse(input: CreateOmniVideoInput): NormalizedOmniRequest {
  const result = createOmniVideoInputSchema.safeParse(input);
  if (!result.success) throw new Error(`expected valid input, got ${JSON.stringify(result.error.issues, null, 1)}`);
  return result.data;
}

describe('toUpstreamBody matches the reference example bodies', () => {
  const noCallback = { externalTaskId: 'our-task-1', callbackUrl: null };

  it('text-to-video', () => {
    const req = parse({ prompt: 'A fox runs through snow', mode: 'STD', aspectRatio: 'RATIO_16_9' });
    expect(toUpstreamBody(req, noCallback)).toStrictEqual({
      model_name: 'kling-video-o1',
      prompt: 'A fox runs through snow',
      mode: 'std',
      aspect_ratio: '16:9',
      duration: '5',
      external_task_id: 'our-task-1',
    });
  });

  it('first + end frame (duration sent explicitly, aspect ratio not sent)', () => {
    const req = parse({
      prompt: 'The person dances',
      aspectRatio: 'RATIO_9_16',
      referenceImages: [
        { url: 'https://cdn.example/a.png', type: 'FIRST_FRAME' },
        { url: 'https://cdn.example/b.png', type: 'END_FRAME' },
      ],
    });
    expect(toUpstreamBody(req, noCallback)).toStrictEqual({
      model_name: 'kling-video-o1',
      prompt: 'The person dances',
      image_list: [
        { image_url: 'https://cdn.example/a.png', type: 'first_frame' },
        { image_url: 'https://cdn.example/b.png', type: 'end_frame' },
      ],
      mode: 'pro',
      duration: '5',
      external_task_id: 'our-task-1',
    });
  });

  it('image + element reference (element id as a string, inline image as raw base64)', () => {
    const bytes = png(400, 400);
    const req = parse({
      prompt: '<<<image_1>>> walks in Tokyo, meets <<<element_1>>>; style like <<<image_2>>>',
      referenceImages: [{ url: 'https://cdn.example/a.png' }, { base64: `data:image/png;base64,${b64(bytes)}` }],
      elements: [{ elementId: '123456' }],
      aspectRatio: 'RATIO_1_1',
      durationSeconds: 7,
    });
    expect(toUpstreamBody(req, noCallback)).toStrictEqual({
      model_name: 'kling-video-o1',
      prompt: '<<<image_1>>> walks in Tokyo, meets <<<element_1>>>; style like <<<image_2>>>',
      image_list: [{ image_url: 'https://cdn.example/a.png' }, { image_url: b64(bytes) }],
      element_list: [{ element_id: '123456' }],
      mode: 'pro',
      aspect_ratio: '1:1',
      duration: '7',
      external_task_id: 'our-task-1',
    });
  });

  it('edit an existing video (duration and aspect ratio omitted)', () => {
    const req = parse({
      prompt: 'Put the crown from <<<image_1>>> on the girl in <<<video_1>>>',
      referenceImages: [{ url: 'https://cdn.example/crown.png' }],
      referenceVideos: [{ url: 'https://cdn.example/in.mp4', referType: 'BASE', keepOriginalSound: true }],
      aspectRatio: 'RATIO_16_9',
      durationSeconds: 10,
    });
    expect(toUpstreamBody(req, { externalTaskId: 'job-42', callbackUrl: 'https://me.example/hooks/kling' })).toStrictEqual({
      model_name: 'kling-video-o1',
      prompt: 'Put the crown from <<<image_1>>> on the girl in <<<video_1>>>',
      image_list: [{ image_url: 'https://cdn.example/crown.png' }],
      video_list: [{ video_url: 'https://cdn.example/in.mp4', refer_type: 'base', keep_original_sound: 'yes' }],
      mode: 'pro',
      callback_url: 'https://me.example/hooks/kling',
      external_task_id: 'job-42',
    });
  });
});
