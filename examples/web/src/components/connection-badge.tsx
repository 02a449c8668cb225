import type { FeedState } from '../live-feed.ts';
import { useFeedState } from '../live.tsx';

const LABELS: Record<FeedState, string> = {
  idle: 'Offline',
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  refused: 'Key refused',
};

/** Whether the page is receiving live updates right now. */
export function ConnectionBadge() {
  const state = useFeedState();
  return (
    <output className={`connection connection-${state}`} data-testid="connection" data-state={state}>
      {LABELS[state]}
    </output>
  );
}
