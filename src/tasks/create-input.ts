import { createHash } from 'node:crypto';
import { z } from 'zod';
import { readImageHeader } from './image-header.ts';
import { isStorableText, STORABLE_TEXT_MESSAGE } from '../db/storable.ts';

/** Models this gateway lets clients pick; CometAPI routes only kling-video-o1 to this endpoint. */
export const ALLOWED_MODEL_NAMES = ['kling-video-o1'] as const;

const MAX_PROMPT_CODE_POINTS = 2500;
const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
const MIN_IMAGE_SIDE = 300;
const MAX_REFERENCES = 7;
const MAX_REFERENCES_WITH_VIDEO = 4;
const MAX_CLIENT_ID_CODE_POINTS = 128;
const INT64_MAX = 2n ** 63n - 1n;
/** A day: a task waits for a slot at most as long as its deadline anyway. */
const MAX_CANCEL_AFTER_SECONDS = 86_400;

type AspectRatio = 'RATIO_16_9' | 'RATIO_9_16' | 'RATIO_1_1';
type FrameType = 'FIRST_FRAME' | 'END_FRAME';

export type NormalizedOmniRequest = {
  prompt: string;
  modelName: string;
  mode: 'STD' | 'PRO';
  /** null when not sent upstream (first-frame image or base video), even if the client gave one */
  aspectRatio: AspectRatio | null;
  /** null when a base video is given (the output keeps the input's length) */
  durationSeconds: number | null;
  referenceImages: {
    index: number;
    url: string | null;
    /** raw base64, any data: URL prefix stripped */
    base64: string | null;
    sha256: string | null;
    byteSize: number | null;
    format: 'png' | 'jpeg' | null;
    width: number | null;
    height: number | null;
    type: FrameType | null;
  }[];
  elements: { index: number; elementId: string }[];
  referenceVideos: { index: number; url: string; referType: 'FEATURE' | 'BASE'; keepOriginalSound: boolean }[];
  externalTaskId: string | null;
  idempotencyKey: string | null;
  /** Order among the tenant's own waiting tasks. */
  priority: 'HIGH' | 'NORMAL' | 'LOW';
  /** A task still waiting for an upstream slot this many seconds after its creation is cancelled. */
  cancelAfterSeconds: number | null;
};

type NormalizedImage = NormalizedOmniRequest['referenceImages'][number];
type ImageProblem = { path: string[]; message: string };
type InspectedImage = { image: Omit<NormalizedImage, 'index'>; problems: ImageProblem[] };

// Lengths count Unicode code points, so an emoji is one character as a person would count it
// (and as PostgreSQL's varchar counts), not two UTF-16 units.
function codePointLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

const TEXT_MESSAGE = STORABLE_TEXT_MESSAGE;

/** A client string that can be stored and returned verbatim. */
const text = () => z.string().refine(isStorableText, { message: TEXT_MESSAGE });

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === 'http:' || protocol === 'https:';
}

const clientId = (field: string) =>
  text()
    .refine((v) => codePointLength(v) >= 1 && codePointLength(v) <= MAX_CLIENT_ID_CODE_POINTS, {
      message: `${field} must be 1 to ${MAX_CLIENT_ID_CODE_POINTS} characters`,
    })
    .refine((v) => !/\p{Cc}/u.test(v), { message: `${field} must not contain control characters` })
    .nullish();

const DATA_URL_PREFIX = /^data:[^,]*;base64,/i;
// A flat character class: a grouped quantifier would backtrack recursively on 13 MB strings.
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;

function inspectBase64(input: string): { base64: string; problems: ImageProblem[]; decoded?: Buffer } {
  const problem = (message: string) => ({ base64: input, problems: [{ path: ['base64'], message }] });
  let base64 = input;
  const prefix = DATA_URL_PREFIX.exec(input);
  if (prefix) base64 = input.slice(prefix[0].length);
  else if (/^data:/i.test(input)) return problem('a data: URL must be base64-encoded (data:image/png;base64,...)');
  if (base64.length === 0) return problem('base64 image is empty');
  if (base64.length % 4 !== 0 || !BASE64_CHARS.test(base64)) {
    return problem('base64 must use the standard alphabet (A-Z, a-z, 0-9, +, /) with = padding and no whitespace');
  }
  // The decoded size follows from the length, so oversized images are refused before decoding.
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  const byteSize = (base64.length / 4) * 3 - padding;
  if (byteSize > MAX_IMAGE_BYTES) {
    return problem(`image is ${byteSize} bytes; the limit is 10 MB (${MAX_IMAGE_BYTES} bytes)`);
  }
  return { base64, problems: [], decoded: Buffer.from(base64, 'base64') };
}

function inspectImage(input: {
  url?: string | null | undefined;
  base64?: string | null | undefined;
  type?: FrameType | null | undefined;
}): InspectedImage {
  const image: Omit<NormalizedImage, 'index'> = {
    url: null,
    base64: null,
    sha256: null,
    byteSize: null,
    format: null,
    width: null,
    height: null,
    type: input.type ?? null,
  };
  const hasUrl = input.url != null;
  if (hasUrl === (input.base64 != null)) {
    return { image, problems: [{ path: [], message: 'a reference image needs exactly one of url and base64' }] };
  }
  if (input.url != null) {
    image.url = input.url;
    const problems = !isStorableText(input.url)
      ? [{ path: ['url'], message: TEXT_MESSAGE }]
      : isHttpUrl(input.url)
        ? []
        : [{ path: ['url'], message: 'url must be an http or https URL' }];
    return { image, problems };
  }
  const { base64, problems, decoded } = inspectBase64(input.base64 ?? '');
  image.base64 = base64;
  if (!decoded) return { image, problems };
  const header = readImageHeader(decoded);
  if ('error' in header) return { image, problems: [{ path: ['base64'], message: header.error }] };
  const { width, height } = header;
  Object.assign(image, {
    sha256: createHash('sha256').update(decoded).digest('hex'),
    byteSize: decoded.length,
    format: header.format,
    width,
    height,
  });
  if (width < MIN_IMAGE_SIDE || height < MIN_IMAGE_SIDE) {
    problems.push({
      path: ['base64'],
      message: `image is ${width}x${height} px; each side must be at least ${MIN_IMAGE_SIDE} px`,
    });
  }
  // width/height within [1/2.5, 2.5], kept in integers: 2w <= 5h and 2h <= 5w.
  if (2 * width > 5 * height || 2 * height > 5 * width) {
    problems.push({
      path: ['base64'],
      message: `image is ${width}x${height} px; the aspect ratio must be between 1:2.5 and 2.5:1`,
    });
  }
  return { image, problems };
}

const referenceImageInput = z
  .object({
    url: z.string().nullish(),
    base64: z.string().nullish(),
    type: z.enum(['FIRST_FRAME', 'END_FRAME']).nullish(),
  })
  // Never fails: it decodes once and records problems, which the cross-field check reports.
  .transform(inspectImage);

const fields = z.object({
  prompt: text()
    .refine((v) => v.trim().length > 0, { message: 'prompt must not be empty or only whitespace' })
    .refine((v) => codePointLength(v) <= MAX_PROMPT_CODE_POINTS, {
      message: `prompt must be at most ${MAX_PROMPT_CODE_POINTS} characters`,
    }),
  modelName: text()
    .refine((v) => (ALLOWED_MODEL_NAMES as readonly string[]).includes(v), {
      message: `modelName must be one of: ${ALLOWED_MODEL_NAMES.join(', ')}`,
    })
    .nullish(),
  mode: z.enum(['STD', 'PRO']).nullish(),
  aspectRatio: z.enum(['RATIO_16_9', 'RATIO_9_16', 'RATIO_1_1']).nullish(),
  durationSeconds: z
    .number()
    .refine((v) => Number.isInteger(v) && v >= 3 && v <= 10, { message: 'durationSeconds must be an integer from 3 to 10' })
    .nullish(),
  // The count is checked before any image is decoded: a long list of large images costs nothing.
  referenceImages: z
    .array(z.unknown())
    .max(MAX_REFERENCES, { message: `reference images and elements together must be at most ${MAX_REFERENCES}` })
    .pipe(z.array(referenceImageInput))
    .nullish(),
  elements: z
    .array(
      z.object({
        elementId: text().refine((v) => /^\d{1,19}$/.test(v) && BigInt(v) <= INT64_MAX, {
          message: 'elementId must be a non-empty string of digits (Kling element ids are 64-bit integers)',
        }),
      }),
    )
    .nullish(),
  referenceVideos: z
    .array(
      z.object({
        url: text().refine(isHttpUrl, { message: 'url must be an http or https URL' }),
        referType: z.enum(['FEATURE', 'BASE']),
        keepOriginalSound: z.boolean().nullish(),
      }),
    )
    .nullish(),
  externalTaskId: clientId('externalTaskId'),
  idempotencyKey: clientId('idempotencyKey'),
  priority: z.enum(['HIGH', 'NORMAL', 'LOW']).nullish(),
  cancelAfterSeconds: z
    .number()
    .refine((v) => Number.isInteger(v) && v >= 1 && v <= MAX_CANCEL_AFTER_SECONDS, {
      message: `cancelAfterSeconds must be a whole number from 1 to ${MAX_CANCEL_AFTER_SECONDS}`,
    })
    .nullish(),
});

type Fields = z.output<typeof fields>;

function shapeOf(v: Fields) {
  const images = v.referenceImages ?? [];
  const elements = v.elements ?? [];
  const videos = v.referenceVideos ?? [];
  const hasFirstFrame = images.some((i) => i.image.type === 'FIRST_FRAME');
  const hasBaseVideo = videos.some((x) => x.referType === 'BASE');
  return { images, elements, videos, hasFirstFrame, hasBaseVideo };
}

const REFERENCE_TOKEN = /<<<(image|element|video)_(\d+)>>>/g;

function checkRules(v: Fields, ctx: z.RefinementCtx): void {
  const { images, elements, videos, hasFirstFrame, hasBaseVideo } = shapeOf(v);
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });

  images.forEach((img, i) => {
    for (const p of img.problems) issue(['referenceImages', i, ...p.path], p.message);
  });

  const counts = { image: images.length, element: elements.length, video: videos.length };
  const reported = new Set<string>();
  for (const match of v.prompt.matchAll(REFERENCE_TOKEN)) {
    const [token, kind, index] = [match[0], match[1] as keyof typeof counts, Number(match[2])];
    const available = counts[kind];
    if ((index >= 1 && index <= available) || reported.has(token)) continue;
    reported.add(token);
    issue(['prompt'], `prompt refers to ${token}, but ${available} ${kind}${available === 1 ? ' is' : 's are'} given`);
  }

  if (videos.length > 1) issue(['referenceVideos'], 'at most one reference video is allowed');
  const limit = videos.length > 0 ? MAX_REFERENCES_WITH_VIDEO : MAX_REFERENCES;
  if (images.length + elements.length > limit) {
    issue(
      [images.length > 0 ? 'referenceImages' : 'elements'],
      `reference images and elements together must be at most ${limit}${videos.length > 0 ? ' when a reference video is given' : ''}`,
    );
  }

  const typePath = (i: number) => ['referenceImages', i, 'type'];
  const firsts = images.flatMap((img, i) => (img.image.type === 'FIRST_FRAME' ? [i] : []));
  const ends = images.flatMap((img, i) => (img.image.type === 'END_FRAME' ? [i] : []));
  if (hasBaseVideo) {
    for (const i of [...firsts, ...ends]) {
      issue(typePath(i), 'FIRST_FRAME and END_FRAME images cannot be combined with a base video (referType BASE)');
    }
  } else {
    for (const i of firsts.slice(1)) issue(typePath(i), 'at most one FIRST_FRAME image is allowed');
    for (const i of ends.slice(1)) issue(typePath(i), 'at most one END_FRAME image is allowed');
    for (const i of ends.slice(0, 1)) {
      if (firsts.length === 0) issue(typePath(i), 'an END_FRAME image needs a FIRST_FRAME image');
      if (images.length > 2) issue(typePath(i), 'an END_FRAME image is only allowed with at most two images');
      // Reference §1 (O1 input limits): first + last frame generation takes no elements.
      if (elements.length > 0) issue(['elements'], 'elements cannot be combined with a FIRST_FRAME and END_FRAME pair');
    }
  }

  const d = v.durationSeconds;
  if (!hasBaseVideo && d != null && Number.isInteger(d) && d >= 3 && d <= 10 && d !== 5 && d !== 10) {
    const textOnly = images.length === 0 && elements.length === 0 && videos.length === 0;
    const firstFrameOnly = images.length === 1 && images[0]?.image.type === 'FIRST_FRAME' && elements.length === 0 && videos.length === 0;
    if (textOnly) issue(['durationSeconds'], 'durationSeconds must be 5 or 10 for text-to-video');
    if (firstFrameOnly) issue(['durationSeconds'], 'durationSeconds must be 5 or 10 for a video from a first frame only');
  }

  if (v.aspectRatio == null && !hasFirstFrame && !hasBaseVideo) {
    issue(['aspectRatio'], 'aspectRatio is required unless a FIRST_FRAME image or a base video is given');
  }
}

function normalize(v: Fields): NormalizedOmniRequest {
  const { images, elements, videos, hasFirstFrame, hasBaseVideo } = shapeOf(v);
  return {
    prompt: v.prompt,
    modelName: v.modelName ?? 'kling-video-o1',
    mode: v.mode ?? 'PRO',
    aspectRatio: hasFirstFrame || hasBaseVideo ? null : (v.aspectRatio ?? null),
    durationSeconds: hasBaseVideo ? null : (v.durationSeconds ?? 5),
    referenceImages: images.map((img, i) => ({ index: i + 1, ...img.image })),
    elements: elements.map((e, i) => ({ index: i + 1, elementId: e.elementId })),
    referenceVideos: videos.map((x, i) => ({
      index: i + 1,
      url: x.url,
      referType: x.referType,
      keepOriginalSound: x.keepOriginalSound ?? false,
    })),
    externalTaskId: v.externalTaskId ?? null,
    idempotencyKey: v.idempotencyKey ?? null,
    priority: v.priority ?? 'NORMAL',
    cancelAfterSeconds: v.cancelAfterSeconds ?? null,
  };
}

/** GraphQL `CreateOmniVideoInput` → the request we store and send upstream. Synchronous. */
export const createOmniVideoInputSchema = fields.superRefine(checkRules).transform(normalize);

export type CreateOmniVideoInput = z.input<typeof createOmniVideoInputSchema>;
