import type { Logger } from 'pino';
import type { TenantService, Viewer } from '../tenants/tenants.ts';

export type Services = {
  tenants: TenantService;
};

export type GraphQLContext = {
  viewer: Viewer;
  services: Services;
  logger: Logger;
};
