import { useCallback, useState } from 'react';
import { useQuery } from 'urql';
import type { OmniTaskStatus, TaskDetailFragment, TaskSummaryFragment } from '../gql/graphql';
import { ASPECT_LABELS, formatDateTime, STATUS_LABELS, STATUSES } from '../labels.ts';
import { useFeedResync, useFeedTasks, useLiveTask } from '../live.tsx';
import { TaskPageDocument } from '../operations.ts';
import { StatusBadge } from './status-badge.tsx';

export const PAGE_SIZE = 10;

/** Which page: the newest (no cursor), older than a page's end, or newer than a page's start. */
type Page = { kind: 'first' } | { kind: 'older'; after: string } | { kind: 'newer'; before: string };

function pageVariables(page: Page) {
  switch (page.kind) {
    case 'first':
      return { first: PAGE_SIZE };
    case 'older':
      return { first: PAGE_SIZE, after: page.after };
    case 'newer':
      return { last: PAGE_SIZE, before: page.before };
  }
}

function TaskRow(props: { task: TaskSummaryFragment; selected: boolean; onSelect: (id: string) => void }) {
  const task = useLiveTask(props.task);
  return (
    <tr className={props.selected ? 'selected' : undefined} data-task-id={task.id}>
      <td>
        <StatusBadge status={task.status} />
      </td>
      <td className="prompt-cell">
        <button type="button" className="link" onClick={() => props.onSelect(task.id)} title={task.prompt}>
          {task.prompt}
        </button>
      </td>
      <td>{task.mode}</td>
      <td>{task.aspectRatio === null ? '—' : ASPECT_LABELS[task.aspectRatio]}</td>
      <td>{task.durationSeconds === null ? '—' : `${task.durationSeconds} s`}</td>
      <td className="when">{formatDateTime(task.createdAt)}</td>
    </tr>
  );
}

/**
 * The tenant's tasks, newest first, a page at a time: `first`/`after` towards older tasks,
 * `last`/`before` back towards newer ones; `pageInfo` says whether there is more either way.
 */
export function TaskList(props: { selectedId: string | null; onSelect: (id: string) => void }) {
  const [status, setStatus] = useState<OmniTaskStatus | ''>('');
  const [page, setPage] = useState<Page>({ kind: 'first' });
  const [pageNumber, setPageNumber] = useState(1);
  const filter = status === '' ? null : { status: [status] };
  // A page seen before shows at once from the cache and is read again: it may have changed since.
  const [{ data, fetching, error }, reexecute] = useQuery({
    query: TaskPageDocument,
    variables: { ...pageVariables(page), filter },
    requestPolicy: 'cache-and-network',
  });
  const connection = data?.omniTasks;

  // A change the page does not show: a task that entered this page's range (made elsewhere or
  // while away, or one that now matches the filter), or a shown task that left the filter. Read
  // the page again; changes of tasks shown in place need nothing (the rows follow the feed).
  const onTask = useCallback(
    (task: TaskDetailFragment) => {
      if (connection === undefined) return;
      const rows = connection.edges.map((edge) => edge.node);
      const matches = status === '' || task.status === status;
      const shown = rows.some((row) => row.id === task.id);
      const created = Date.parse(task.createdAt);
      const newest = rows[0];
      const oldest = rows.at(-1);
      const belowTop = page.kind === 'first' || (newest !== undefined && created <= Date.parse(newest.createdAt));
      const aboveBottom = !connection.pageInfo.hasNextPage || (oldest !== undefined && created >= Date.parse(oldest.createdAt));
      if ((matches && !shown && belowTop && aboveBottom) || (shown && !matches)) reexecute({ requestPolicy: 'network-only' });
    },
    [connection, page.kind, status, reexecute],
  );
  useFeedTasks(onTask);
  useFeedResync(useCallback(() => reexecute({ requestPolicy: 'network-only' }), [reexecute]));

  const go = (next: Page, delta: number) => {
    setPage(next);
    setPageNumber((n) => (next.kind === 'first' ? 1 : n + delta));
  };
  const older = () => connection?.pageInfo.endCursor && go({ kind: 'older', after: connection.pageInfo.endCursor }, +1);
  const newer = () => {
    if (!connection?.pageInfo.startCursor) return;
    go(pageNumber <= 2 ? { kind: 'first' } : { kind: 'newer', before: connection.pageInfo.startCursor }, -1);
  };

  return (
    <section className="panel task-list" aria-label="Tasks">
      <div className="list-header">
        <h2>Tasks</h2>
        <label>
          Status{' '}
          <select
            aria-label="Status filter"
            value={status}
            onChange={(e) => {
              setStatus(e.target.value as OmniTaskStatus | '');
              go({ kind: 'first' }, 0);
            }}
          >
            <option value="">all</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {STATUS_LABELS[s]}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error !== undefined && (
        <p className="problem" role="alert">
          {error.message}
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th>Status</th>
            <th>Prompt</th>
            <th>Mode</th>
            <th>Aspect</th>
            <th>Length</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {connection?.edges.map((edge) => (
            <TaskRow key={edge.node.id} task={edge.node} selected={edge.node.id === props.selectedId} onSelect={props.onSelect} />
          ))}
        </tbody>
      </table>
      {connection !== undefined && connection.edges.length === 0 && (
        <p className="empty">{status === '' ? 'No tasks yet: create one.' : `No ${STATUS_LABELS[status].toLowerCase()} tasks.`}</p>
      )}
      <nav className="pager" aria-label="Pages">
        <button type="button" onClick={newer} disabled={!connection?.pageInfo.hasPreviousPage || fetching}>
          ← Newer
        </button>
        <span data-testid="page-number">Page {pageNumber}</span>
        <button type="button" onClick={older} disabled={!connection?.pageInfo.hasNextPage || fetching}>
          Older →
        </button>
      </nav>
    </section>
  );
}
