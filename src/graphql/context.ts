import type { Logger } from 'pino';
import type { RateLimits } from '../auth/rate-limits.ts';
import type { StoredVideo } from '../db/schema.ts';
import type { MeteringService } from '../metering/metering.ts';
import type { TaskService } from '../tasks/tasks.ts';
import type { WatchService } from '../tasks/watch.ts';
import type { TenantService, Viewer } from '../tenants/tenants.ts';
import type { WebhookEndpointService } from '../webhooks/endpoints.ts';

export type Services = {
  tenants: TenantService;
  tasks: TaskService;
  metering: MeteringService;
  watch: WatchService;
  /** Outbound webhook endpoints and their delivery logs. */
  webhooks: WebhookEndpointService;
  /** The per-tenant request rate, for fields that cost a request of their own (refreshOmniTask). */
  rateLimits: Pick<RateLimits, 'admitRequest'>;
  /** Where a client fetches a video: a signed URL of our copy once archived, else the upstream's. */
  videoUrl(video: StoredVideo): Promise<string>;
};

export type GraphQLContext = {
  viewer: Viewer;
  services: Services;
  logger: Logger;
  /** The HTTP exchange's lifetime (null over WebSocket, where graphql-ws ends subscriptions itself). */
  signal: AbortSignal | null;
};

/** The context of a field behind the tenant scope (`t.withAuth({ tenant: true })`): the viewer is a tenant. */
export type TenantContext = GraphQLContext & { viewer: Extract<Viewer, { kind: 'tenant' }> };
