import { useId, useRef, useState } from 'react';
import type { ChangeEvent, FormEvent, ReactNode } from 'react';
import { useMutation } from 'urql';
import type { AspectRatio, CreateOmniVideoInput, FrameType, OmniMode, ReferType } from '../gql/graphql';
import { groupIssues } from '../issues.ts';
import type { FieldName } from '../issues.ts';
import { ASPECT_LABELS, MODE_LABELS } from '../labels.ts';
import { CreateOmniVideoDocument } from '../operations.ts';

type ImageSource = 'none' | 'url' | 'file';

type Form = {
  prompt: string;
  mode: OmniMode;
  aspectRatio: AspectRatio | '';
  durationSeconds: number;
  imageSource: ImageSource;
  imageUrl: string;
  imageFile: { name: string; dataUrl: string } | null;
  imageType: FrameType | '';
  elementId: string;
  videoUrl: string;
  videoReferType: ReferType;
};

const INITIAL: Form = {
  prompt: '',
  mode: 'STD',
  aspectRatio: 'RATIO_16_9',
  durationSeconds: 5,
  imageSource: 'none',
  imageUrl: '',
  imageFile: null,
  imageType: '',
  elementId: '',
  videoUrl: '',
  videoReferType: 'FEATURE',
};

const DURATIONS = [3, 4, 5, 6, 7, 8, 9, 10];

/** The form as the mutation's input: empty optional parts are left out. */
function toInput(form: Form, idempotencyKey: string): CreateOmniVideoInput {
  const type = form.imageType === '' ? null : form.imageType;
  const image =
    form.imageSource === 'url'
      ? { url: form.imageUrl.trim(), type }
      : form.imageSource === 'file' && form.imageFile !== null
        ? { base64: form.imageFile.dataUrl, type }
        : null;
  return {
    prompt: form.prompt,
    mode: form.mode,
    aspectRatio: form.aspectRatio === '' ? null : form.aspectRatio,
    durationSeconds: form.durationSeconds,
    ...(image === null ? {} : { referenceImages: [image] }),
    ...(form.elementId.trim() === '' ? {} : { elements: [{ elementId: form.elementId.trim() }] }),
    ...(form.videoUrl.trim() === '' ? {} : { referenceVideos: [{ url: form.videoUrl.trim(), referType: form.videoReferType }] }),
    idempotencyKey,
  };
}

/** A random idempotency key (crypto.randomUUID needs a secure context; plain http on a LAN is not one). */
function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

function readAsDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** A field with its label and, right below it, what the gateway said about it. */
function Field(props: { name: FieldName; label: string; htmlFor: string; issues: string[] | undefined; children: ReactNode }) {
  const { name, label, htmlFor, issues, children } = props;
  return (
    <div className={issues === undefined ? 'field' : 'field invalid'} data-field={name}>
      <label htmlFor={htmlFor}>{label}</label>
      {children}
      {issues !== undefined && (
        <div className="issues" id={`${htmlFor}-issue`}>
          {issues.map((message) => (
            <p className="issue" key={message}>
              {message}
            </p>
          ))}
        </div>
      )}
    </div>
  );
}

export function CreateTaskForm({ onCreated }: { onCreated: (taskId: string) => void }) {
  const id = useId();
  const [form, setForm] = useState<Form>(INITIAL);
  const [issues, setIssues] = useState<Map<FieldName, string[]>>(new Map());
  const [problem, setProblem] = useState<string | null>(null);
  const [{ fetching }, createOmniVideo] = useMutation(CreateOmniVideoDocument);
  // One key per intended create: kept when the request failed on the way (a retry must not make a
  // second task), dropped once the gateway answered.
  const idempotencyKey = useRef<string | null>(null);

  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((current) => ({ ...current, [key]: value }));
  const control = (field: FieldName) => ({
    id: `${id}-${field}`,
    'aria-invalid': issues.has(field) || undefined,
    'aria-describedby': issues.has(field) ? `${id}-${field}-issue` : undefined,
  });

  async function chooseFile(event: ChangeEvent<HTMLInputElement>) {
    const file = event.target.files?.[0];
    set('imageFile', file === undefined ? null : { name: file.name, dataUrl: await readAsDataUrl(file) });
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    idempotencyKey.current ??= newIdempotencyKey();
    setProblem(null);
    const result = await createOmniVideo({ input: toInput(form, idempotencyKey.current) });
    const outcome = result.data?.createOmniVideo;
    if (outcome === undefined) {
      setIssues(new Map());
      setProblem(`The request failed: ${result.error?.message ?? 'no answer'}. Send it again: it will not make a second task.`);
      return;
    }
    idempotencyKey.current = null;
    switch (outcome.__typename) {
      case 'CreateOmniVideoSuccess':
        setIssues(new Map());
        setForm((current) => ({ ...current, prompt: '' }));
        onCreated(outcome.task.id);
        return;
      case 'InvalidInputError': {
        const grouped = groupIssues(outcome.issues);
        setIssues(grouped);
        setProblem(grouped.has('form') ? null : outcome.message);
        return;
      }
      case 'RateLimitedError':
        setIssues(new Map());
        setProblem(`${outcome.message} Try again in ${outcome.retryAfterSeconds} s.`);
        return;
      default:
        setIssues(new Map());
        setProblem(outcome.message);
    }
  }

  const formIssues = issues.get('form');
  return (
    <form className="panel create-form" onSubmit={submit} noValidate aria-label="Create a video">
      <h2>Create a video</h2>
      <Field name="prompt" label="Prompt" htmlFor={`${id}-prompt`} issues={issues.get('prompt')}>
        <textarea
          {...control('prompt')}
          rows={3}
          value={form.prompt}
          placeholder="A red fox runs through fresh snow at dawn"
          onChange={(e) => set('prompt', e.target.value)}
        />
      </Field>
      <p className="hint">
        Refer to inputs by position: <code>{'<<<image_1>>>'}</code>, <code>{'<<<element_1>>>'}</code>, <code>{'<<<video_1>>>'}</code>.
      </p>
      <div className="row">
        <Field name="mode" label="Mode" htmlFor={`${id}-mode`} issues={issues.get('mode')}>
          <select {...control('mode')} value={form.mode} onChange={(e) => set('mode', e.target.value as OmniMode)}>
            {(Object.keys(MODE_LABELS) as OmniMode[]).map((mode) => (
              <option key={mode} value={mode}>
                {MODE_LABELS[mode]}
              </option>
            ))}
          </select>
        </Field>
        <Field name="aspectRatio" label="Aspect ratio" htmlFor={`${id}-aspectRatio`} issues={issues.get('aspectRatio')}>
          <select
            {...control('aspectRatio')}
            value={form.aspectRatio}
            onChange={(e) => set('aspectRatio', e.target.value as AspectRatio | '')}
          >
            {(Object.keys(ASPECT_LABELS) as AspectRatio[]).map((ratio) => (
              <option key={ratio} value={ratio}>
                {ASPECT_LABELS[ratio]}
              </option>
            ))}
            <option value="">none (first frame or base video)</option>
          </select>
        </Field>
        <Field name="durationSeconds" label="Duration" htmlFor={`${id}-durationSeconds`} issues={issues.get('durationSeconds')}>
          <select
            {...control('durationSeconds')}
            value={form.durationSeconds}
            onChange={(e) => set('durationSeconds', Number(e.target.value))}
          >
            {DURATIONS.map((seconds) => (
              <option key={seconds} value={seconds}>
                {seconds} s
              </option>
            ))}
          </select>
        </Field>
      </div>

      <Field name="referenceImage" label="Reference image" htmlFor={`${id}-referenceImage`} issues={issues.get('referenceImage')}>
        <div className="row">
          <select
            id={`${id}-referenceImage`}
            aria-label="Reference image source"
            value={form.imageSource}
            onChange={(e) => set('imageSource', e.target.value as ImageSource)}
          >
            <option value="none">none</option>
            <option value="url">by URL</option>
            <option value="file">upload a file</option>
          </select>
          {form.imageSource === 'url' && (
            <input
              {...control('referenceImage')}
              id={`${id}-referenceImage-url`}
              aria-label="Reference image URL"
              type="url"
              value={form.imageUrl}
              placeholder="https://example.com/me.png"
              onChange={(e) => set('imageUrl', e.target.value)}
            />
          )}
          {form.imageSource === 'file' && (
            <input
              {...control('referenceImage')}
              id={`${id}-referenceImage-file`}
              aria-label="Reference image file"
              type="file"
              accept="image/png,image/jpeg"
              onChange={chooseFile}
            />
          )}
          {form.imageSource !== 'none' && (
            <select
              aria-label="Reference image frame"
              value={form.imageType}
              onChange={(e) => set('imageType', e.target.value as FrameType | '')}
            >
              <option value="">reference</option>
              <option value="FIRST_FRAME">first frame</option>
              <option value="END_FRAME">end frame</option>
            </select>
          )}
        </div>
      </Field>

      <Field name="elementId" label="Element id" htmlFor={`${id}-elementId`} issues={issues.get('elementId')}>
        <input
          {...control('elementId')}
          value={form.elementId}
          placeholder="e.g. 829463018264"
          onChange={(e) => set('elementId', e.target.value)}
        />
      </Field>

      <Field name="referenceVideo" label="Reference video URL" htmlFor={`${id}-referenceVideo`} issues={issues.get('referenceVideo')}>
        <div className="row">
          <input
            {...control('referenceVideo')}
            type="url"
            value={form.videoUrl}
            placeholder="https://example.com/clip.mp4"
            onChange={(e) => set('videoUrl', e.target.value)}
          />
          <select
            aria-label="Reference video use"
            value={form.videoReferType}
            onChange={(e) => set('videoReferType', e.target.value as ReferType)}
          >
            <option value="FEATURE">as a feature reference</option>
            <option value="BASE">as the base to edit</option>
          </select>
        </div>
      </Field>

      {formIssues?.map((message) => (
        <p className="issue" key={message}>
          {message}
        </p>
      ))}
      {problem !== null && (
        <p className="problem" role="alert">
          {problem}
        </p>
      )}
      <button type="submit" className="primary" disabled={fetching}>
        {fetching ? 'Creating…' : 'Create video'}
      </button>
    </form>
  );
}
