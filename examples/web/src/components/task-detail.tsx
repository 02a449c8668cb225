import { useCallback, useState } from 'react';
import type { ReactNode } from 'react';
import { useQuery } from 'urql';
import type { TaskDetailFragment } from '../gql/graphql';
import { ASPECT_LABELS, formatDateTime, MODE_LABELS } from '../labels.ts';
import { useFeedResync, useLiveTask } from '../live.tsx';
import { TaskDocument } from '../operations.ts';
import { StatusBadge } from './status-badge.tsx';

type Video = TaskDetailFragment['videos'][number];

/**
 * The finished video. Its URL is signed and changes with every read of the task (a new expiry),
 * so the player keeps the URL it started with until the video itself changes (the gateway's copy
 * replacing the upstream's) or the URL stops working (expired: read the task again for a new one).
 */
function Player({ video, onBroken }: { video: Video; onBroken: () => void }) {
  const identity = `${video.id}:${video.archived}`;
  const [shown, setShown] = useState({ identity, url: video.url, failures: 0, awaitingFresh: false });
  if (shown.identity !== identity) setShown({ identity, url: video.url, failures: 0, awaitingFresh: false });
  else if (shown.awaitingFresh && shown.url !== video.url) setShown({ ...shown, url: video.url, awaitingFresh: false });
  return (
    <figure className="player">
      {/* biome-ignore lint/a11y/useMediaCaption: the generated videos have no captions to offer */}
      <video
        data-testid="player"
        controls
        preload="metadata"
        playsInline
        src={shown.url}
        onError={() => {
          // Once per video: a URL that fails again after a fresh read is not an expiry.
          if (shown.failures > 0) return;
          setShown((current) => ({ ...current, failures: current.failures + 1, awaitingFresh: true }));
          onBroken();
        }}
      />
      <figcaption>
        {video.archived ? 'Stored by the gateway' : 'Served by the upstream (the gateway is copying it)'}
        {video.durationSeconds !== null && ` · ${video.durationSeconds} s`}
      </figcaption>
    </figure>
  );
}

function Details({ task, onBroken }: { task: TaskDetailFragment; onBroken: () => void }) {
  const live = useLiveTask(task) as TaskDetailFragment;
  const video = live.videos[0];
  return (
    <>
      <div className="detail-header">
        <StatusBadge status={live.status} />
        <span className="version" data-testid="version">
          version {live.version}
        </span>
      </div>
      {live.statusMessage !== null && <p className="status-message">{live.statusMessage}</p>}
      <p className="detail-prompt">{live.prompt}</p>
      {video !== undefined && <Player video={video} onBroken={onBroken} />}
      <dl className="facts">
        <dt>Mode</dt>
        <dd>{MODE_LABELS[live.mode]}</dd>
        <dt>Aspect ratio</dt>
        <dd>{live.aspectRatio === null ? '—' : ASPECT_LABELS[live.aspectRatio]}</dd>
        <dt>Duration</dt>
        <dd>{live.durationSeconds === null ? '—' : `${live.durationSeconds} s`}</dd>
        {live.referenceImages.map((image) => (
          <FactPair
            key={`image-${image.index}`}
            term={`Image ${image.index}${image.type === null ? '' : ` (${image.type.toLowerCase().replace('_', ' ')})`}`}
          >
            {image.url ?? `uploaded, ${Math.round((image.byteSize ?? 0) / 1024)} KB`}
          </FactPair>
        ))}
        {live.elements.map((element) => (
          <FactPair key={`element-${element.index}`} term={`Element ${element.index}`}>
            {element.elementId}
          </FactPair>
        ))}
        {live.referenceVideos.map((ref) => (
          <FactPair key={`video-${ref.index}`} term={`Video ${ref.index} (${ref.referType.toLowerCase()})`}>
            {ref.url}
          </FactPair>
        ))}
        <dt>Created</dt>
        <dd>{formatDateTime(live.createdAt)}</dd>
        <dt>Completed</dt>
        <dd>{formatDateTime(live.completedAt)}</dd>
        <dt>Upstream id</dt>
        <dd>{live.upstreamTaskId ?? '—'}</dd>
      </dl>
    </>
  );
}

function FactPair({ term, children }: { term: string; children: ReactNode }) {
  return (
    <>
      <dt>{term}</dt>
      <dd>{children}</dd>
    </>
  );
}

export function TaskDetail({ taskId }: { taskId: string }) {
  const [{ data, error }, reexecute] = useQuery({ query: TaskDocument, variables: { id: taskId } });
  const refresh = useCallback(() => reexecute({ requestPolicy: 'network-only' }), [reexecute]);
  useFeedResync(refresh);
  const task = data?.omniTask;
  return (
    <section className="panel task-detail" aria-label="Task" data-task-id={taskId}>
      <h2>Task</h2>
      {error !== undefined && (
        <p className="problem" role="alert">
          {error.message}
        </p>
      )}
      {task === null && <p className="empty">This task does not exist (or belongs to another tenant).</p>}
      {task != null && <Details task={task} onBroken={refresh} />}
    </section>
  );
}
