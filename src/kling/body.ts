/**
 * What the body builder reads of a validated create request (the tasks service's normalised
 * request has these fields and more); kling declares it so that it depends on no layer above it.
 */
type UpstreamCreateRequest = {
  prompt: string;
  modelName: string;
  mode: 'STD' | 'PRO';
  aspectRatio: 'RATIO_16_9' | 'RATIO_9_16' | 'RATIO_1_1' | null;
  durationSeconds: number | null;
  referenceImages: { url: string | null; base64: string | null; type: 'FIRST_FRAME' | 'END_FRAME' | null }[];
  elements: { elementId: string }[];
  referenceVideos: { url: string; referType: 'FEATURE' | 'BASE'; keepOriginalSound: boolean }[];
};

export type UpstreamCreateBody = {
  model_name: string;
  prompt: string;
  image_list?: { image_url: string; type?: 'first_frame' | 'end_frame' }[];
  element_list?: { element_id: string }[];
  video_list?: { video_url: string; refer_type: 'feature' | 'base'; keep_original_sound: 'yes' | 'no' }[];
  mode: 'std' | 'pro';
  aspect_ratio?: '16:9' | '9:16' | '1:1';
  duration?: string;
  callback_url?: string;
  external_task_id: string;
};

const ASPECT_RATIOS = { RATIO_16_9: '16:9', RATIO_9_16: '9:16', RATIO_1_1: '1:1' } as const;

/** Maps a validated request to Kling's legacy body (the shape CometAPI forwards unchanged). */
export function toUpstreamBody(
  req: UpstreamCreateRequest,
  opts: { externalTaskId: string; callbackUrl: string | null },
): UpstreamCreateBody {
  const body: UpstreamCreateBody = {
    model_name: req.modelName,
    prompt: req.prompt,
    mode: req.mode === 'STD' ? 'std' : 'pro',
    external_task_id: opts.externalTaskId,
  };
  if (req.referenceImages.length > 0) {
    body.image_list = req.referenceImages.map((img) => ({
      image_url: img.url ?? img.base64 ?? '',
      ...(img.type ? { type: img.type === 'FIRST_FRAME' ? ('first_frame' as const) : ('end_frame' as const) } : {}),
    }));
  }
  // Element ids stay strings: they are 64-bit integers that a JSON number would round past 2^53.
  if (req.elements.length > 0) body.element_list = req.elements.map((e) => ({ element_id: e.elementId }));
  if (req.referenceVideos.length > 0) {
    body.video_list = req.referenceVideos.map((x) => ({
      video_url: x.url,
      refer_type: x.referType === 'BASE' ? 'base' : 'feature',
      keep_original_sound: x.keepOriginalSound ? 'yes' : 'no',
    }));
  }
  if (req.aspectRatio) body.aspect_ratio = ASPECT_RATIOS[req.aspectRatio];
  if (req.durationSeconds != null) body.duration = String(req.durationSeconds);
  if (opts.callbackUrl != null) body.callback_url = opts.callbackUrl;
  return body;
}
