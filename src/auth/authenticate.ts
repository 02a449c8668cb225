import { bearerToken } from './api-keys.ts';
import { ServiceUnavailableError, UnauthenticatedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { TenantService, Viewer } from '../tenants/tenants.ts';

/** Resolves an Authorization header (or a graphql-ws `connectionParams.authorization`) to a viewer. */
export type Authenticate = (authorization: unknown) => Promise<Viewer>;

/**
 * Throws UnauthenticatedError (401) for a missing, unknown or revoked key and
 * ServiceUnavailableError (503) when the database cannot be asked.
 */
export function createAuthenticator(deps: { tenants: Pick<TenantService, 'authenticate'>; logger: Logger }): Authenticate {
  return async (authorization) => {
    const token = bearerToken(typeof authorization === 'string' ? authorization : null);
    if (token === null) throw new UnauthenticatedError();
    let viewer: Viewer | null;
    try {
      viewer = await deps.tenants.authenticate(token);
    } catch (error) {
      deps.logger.warn({ err: error }, 'authentication failed: database unavailable');
      throw new ServiceUnavailableError();
    }
    if (viewer === null) throw new UnauthenticatedError('The API key is unknown or has been revoked.');
    return viewer;
  };
}
