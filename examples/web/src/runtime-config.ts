/** Where the gateway is and how to reach it, learnt when the page loads. */
export type RuntimeConfig = {
  /** `…/graphql` over HTTP: queries, mutations, and subscriptions over SSE. */
  graphqlUrl: string;
  /** The same path over WebSocket (graphql-ws). */
  wsUrl: string;
  /** How the live feed travels: graphql-ws (default) or Server-Sent Events. */
  transport: 'ws' | 'sse';
};

type ServedConfig = { gatewayUrl?: unknown };

/**
 * The gateway's URL comes from `?gateway=` (handy with `vite` in development), else from
 * `config.json` beside the page (written by whoever serves the built app, e.g. `npm run example`),
 * else the page's own origin (the app served by the gateway's host itself).
 */
export async function loadRuntimeConfig(location: Location): Promise<RuntimeConfig> {
  const params = new URLSearchParams(location.search);
  let gateway = params.get('gateway');
  if (gateway === null) {
    const response = await fetch('config.json', { cache: 'no-store' }).catch(() => null);
    const served: ServedConfig | null = response?.ok ? ((await response.json()) as ServedConfig) : null;
    gateway = typeof served?.gatewayUrl === 'string' ? served.gatewayUrl : location.origin;
  }
  const graphqlUrl = new URL('graphql', gateway.endsWith('/') ? gateway : `${gateway}/`);
  const wsUrl = new URL(graphqlUrl);
  wsUrl.protocol = graphqlUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  return { graphqlUrl: graphqlUrl.href, wsUrl: wsUrl.href, transport: params.get('transport') === 'sse' ? 'sse' : 'ws' };
}
