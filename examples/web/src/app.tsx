import { useCallback, useEffect, useState } from 'react';
import { Provider as UrqlProvider, useQuery } from 'urql';
import { forgetApiKey, storeApiKey } from './api-key.ts';
import { ConnectionBadge } from './components/connection-badge.tsx';
import { CreateTaskForm } from './components/create-task-form.tsx';
import { KeyForm } from './components/key-form.tsx';
import { TaskDetail } from './components/task-detail.tsx';
import { TaskList } from './components/task-list.tsx';
import { UsagePanel } from './components/usage-panel.tsx';
import type { TaskDetailFragment } from './gql/graphql';
import { isFinal } from './labels.ts';
import { FeedProvider, useFeedResync, useFeedState, useFeedTasks, useRetainFeed } from './live.tsx';
import { ViewerDocument } from './operations.ts';
import type { RuntimeConfig } from './runtime-config.ts';
import { closeSession, openSession } from './session.ts';
import type { Session } from './session.ts';

function Dashboard({ onSignOut, onRefused }: { onSignOut: () => void; onRefused: () => void }) {
  useRetainFeed();
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [{ data, error }, reexecuteViewer] = useQuery({ query: ViewerDocument });
  const refreshUsage = useCallback(() => reexecuteViewer({ requestPolicy: 'network-only' }), [reexecuteViewer]);
  // Usage grows when a task reaches its final state.
  useFeedTasks(useCallback((task: TaskDetailFragment) => isFinal(task.status) && refreshUsage(), [refreshUsage]));
  useFeedResync(refreshUsage);

  // The gateway refused the key: over HTTP a 401 (UNAUTHENTICATED), over WebSocket a 4403 close.
  const refused = useFeedState() === 'refused' || error?.graphQLErrors.some((e) => e.extensions?.code === 'UNAUTHENTICATED') === true;
  useEffect(() => {
    if (refused) onRefused();
  }, [refused, onRefused]);
  return (
    <div className="dashboard">
      <header className="top">
        <h1>Omni Gateway</h1>
        <span className="tenant" data-testid="tenant">
          {data?.viewer.tenant.name ?? ''}
        </span>
        <ConnectionBadge />
        <button type="button" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      {error !== undefined && (
        <p className="problem" role="alert">
          {error.message}
        </p>
      )}
      <div className="columns">
        <div className="column">
          <CreateTaskForm onCreated={setSelectedId} />
          {data !== undefined && <UsagePanel viewer={data.viewer} />}
        </div>
        <div className="column wide">
          <TaskList selectedId={selectedId} onSelect={setSelectedId} />
          {selectedId !== null && <TaskDetail key={selectedId} taskId={selectedId} />}
        </div>
      </div>
    </div>
  );
}

export function App({ config, initial }: { config: RuntimeConfig; initial: Session | null }) {
  const [session, setSession] = useState<Session | null>(initial);
  const [refused, setRefused] = useState(false);

  // Sessions open and close in event handlers, never in render or effects (see session.ts).
  const signIn = (key: string) => {
    storeApiKey(key);
    setRefused(false);
    setSession(openSession(config, key));
  };
  const signOut = useCallback(
    (wasRefused: boolean) => {
      forgetApiKey();
      if (session !== null) closeSession(session);
      setRefused(wasRefused);
      setSession(null);
    },
    [session],
  );
  const onSignOut = useCallback(() => signOut(false), [signOut]);
  const onRefused = useCallback(() => signOut(true), [signOut]);

  if (session === null) return <KeyForm onKey={signIn} refused={refused} />;
  return (
    <UrqlProvider value={session.gateway.urql}>
      <FeedProvider value={session.feed}>
        <Dashboard key={session.id} onSignOut={onSignOut} onRefused={onRefused} />
      </FeedProvider>
    </UrqlProvider>
  );
}
