import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import { RateLimitedError, ServiceUnavailableError, UnauthenticatedError } from '../errors.ts';
import { bearerToken } from '../http/bearer.ts';
import type { Logger } from '../logger.ts';
import type { TenantService, Viewer } from '../tenants/tenants.ts';

/**
 * Resolves an Authorization header (or a graphql-ws `connectionParams.authorization`) to a viewer.
 * `address` is the client's, for the throttle on failed attempts.
 */
export type Authenticate = (authorization: unknown, address?: string) => Promise<Viewer>;

/** Failed authentications a client address may make: a burst, then a few per second. */
const FAILURE_BURST = 20;
const FAILURES_PER_SECOND = 5;
const MAX_ADDRESSES = 100_000;

/**
 * Throws UnauthenticatedError (401) for a missing, unknown or revoked key; RateLimitedError (429)
 * when an address that keeps presenting unknown keys presents one more that is not cached (no
 * database read; known keys cached on this instance still pass); ServiceUnavailableError (503)
 * when the database cannot be asked.
 */
export function createAuthenticator(deps: {
  tenants: Pick<TenantService, 'authenticate'>;
  logger: Logger;
  clock?: Clock;
  /** Addresses whose failures are remembered; past that, the longest-known is forgotten. */
  maxAddresses?: number;
}): Authenticate {
  const clock = deps.clock ?? systemClock;
  const maxAddresses = deps.maxAddresses ?? MAX_ADDRESSES;
  // Per address: failure credit left and when it was last topped up (a token bucket of failures).
  const failures = new Map<string, { credit: number; at: number }>();
  const creditOf = (address: string) => {
    const entry = failures.get(address);
    if (entry === undefined) return { credit: FAILURE_BURST, at: clock.now() };
    const now = clock.now();
    return { credit: Math.min(FAILURE_BURST, entry.credit + ((now - entry.at) / 1000) * FAILURES_PER_SECOND), at: now };
  };
  const failed = (address: string | undefined, error: UnauthenticatedError): never => {
    if (address !== undefined) {
      const entry = creditOf(address);
      if (failures.size >= maxAddresses && !failures.has(address)) failures.delete(failures.keys().next().value as string);
      failures.set(address, { credit: entry.credit - 1, at: entry.at });
    }
    throw error;
  };

  /** Refuses a lookup to an address out of failure credit: guessing costs no database read. */
  const admitLookup = (address: string | undefined) => () => {
    if (address === undefined) return;
    const { credit } = creditOf(address);
    if (credit >= 1) return;
    const wait = Math.max(1, Math.ceil((1 - credit) / FAILURES_PER_SECOND));
    throw new RateLimitedError(`Too many failed authentications from this address; retry in ${wait} s.`, wait);
  };

  return async (authorization, address) => {
    const token = bearerToken(typeof authorization === 'string' ? authorization : null);
    if (token === null) throw new UnauthenticatedError();
    let viewer: Viewer | null;
    try {
      viewer = await deps.tenants.authenticate(token, admitLookup(address));
    } catch (error) {
      if (error instanceof RateLimitedError) throw error;
      deps.logger.warn({ err: error }, 'authentication failed: database unavailable');
      throw new ServiceUnavailableError();
    }
    if (viewer === null) return failed(address, new UnauthenticatedError('The API key is unknown or has been revoked.'));
    return viewer;
  };
}
