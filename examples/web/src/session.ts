import { createGatewayClient } from './gateway-client.ts';
import type { GatewayClient } from './gateway-client.ts';
import { createLiveFeed } from './live-feed.ts';
import type { LiveFeed } from './live-feed.ts';
import type { RuntimeConfig } from './runtime-config.ts';

/** Everything that belongs to one API key: its client, its live feed. */
export type Session = { id: number; gateway: GatewayClient; feed: LiveFeed };

let sessions = 0;

/**
 * Opened outside of React's render (at start, or in the sign-in handler) and closed in the
 * sign-out handler: StrictMode runs renders and effects twice in development, and a client made
 * or disposed there would be made twice or disposed while still in use.
 */
export function openSession(config: RuntimeConfig, apiKey: string): Session {
  const gateway = createGatewayClient(config, apiKey);
  const feed = createLiveFeed(gateway);
  sessions += 1;
  if (import.meta.env.DEV) Object.assign(window, { omniLiveFeed: feed });
  return { id: sessions, gateway, feed };
}

export function closeSession(session: Session): void {
  session.gateway.dispose();
}
