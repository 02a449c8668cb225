import { createContext, useContext, useEffect, useSyncExternalStore } from 'react';
import type { TaskDetailFragment, TaskSummaryFragment } from './gql/graphql';
import type { FeedState, LiveFeed } from './live-feed.ts';

const FeedContext = createContext<LiveFeed | null>(null);

export const FeedProvider = FeedContext.Provider;

export function useFeed(): LiveFeed {
  const feed = useContext(FeedContext);
  if (feed === null) throw new Error('useFeed needs a FeedProvider');
  return feed;
}

/** Keeps the tenant-wide subscription open while the calling component is mounted. */
export function useRetainFeed(): void {
  const feed = useFeed();
  useEffect(() => feed.retain(), [feed]);
}

export function useFeedState(): FeedState {
  const feed = useFeed();
  return useSyncExternalStore(feed.subscribe, feed.state);
}

/** The newer of a task as a query returned it and as the live feed last delivered it. */
export function useLiveTask<T extends TaskSummaryFragment>(task: T): T | TaskDetailFragment {
  const feed = useFeed();
  const live = useSyncExternalStore(feed.subscribe, () => feed.task(task.id));
  return live !== undefined && live.version > task.version ? live : task;
}

/** Runs `listener` for each task the feed delivers that is newer than what it had. */
export function useFeedTasks(listener: (task: TaskDetailFragment) => void): void {
  const feed = useFeed();
  useEffect(() => feed.onTask(listener), [feed, listener]);
}

/** Runs `listener` when the page should read again what it shows (changes may have been missed). */
export function useFeedResync(listener: () => void): void {
  const feed = useFeed();
  useEffect(() => feed.onResync(listener), [feed, listener]);
}
