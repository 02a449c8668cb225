import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import { RateLimitedError } from '../errors.ts';
import type { Viewer } from '../tenants/tenants.ts';

/**
 * Token buckets kept in this process. With several gateway instances behind a load balancer each
 * keeps its own buckets, so a tenant's effective limit is the per-instance limit times the number
 * of instances it is spread over (documented in the README).
 */
export type RateLimiter = {
  /** Takes a token from `key`'s bucket; 0 when allowed, else the seconds until one is available. */
  take(key: string, rule: { perSecond: number; burst: number }): number;
};

const IDLE_FORGET_MS = 10 * 60_000;
const MAX_BUCKETS = 100_000;

function createRateLimiter(clock: Clock): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key, { perSecond, burst }) {
      const time = clock.now();
      let bucket = buckets.get(key);
      if (bucket === undefined) {
        if (buckets.size >= MAX_BUCKETS) {
          for (const [staleKey, stale] of buckets) if (time - stale.at > IDLE_FORGET_MS) buckets.delete(staleKey);
        }
        bucket = { tokens: burst, at: time };
        buckets.set(key, bucket);
      }
      bucket.tokens = Math.min(burst, bucket.tokens + ((time - bucket.at) / 1000) * perSecond);
      bucket.at = time;
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
    },
  };
}

export type RateLimits = {
  /** Any request of a tenant; throws RateLimitedError (HTTP 429 with Retry-After) when over its rate. */
  admitRequest(viewer: Viewer): void;
  /** A createOmniVideo of a tenant; throws RateLimitedError when over its rate. */
  admitCreate(tenantId: string, createsPerMinute: number | null): void;
};

/**
 * The per-tenant rates: a tenant's own values override the configured defaults; 0 turns a limit
 * off. Admins are never limited.
 */
export function createRateLimits(opts: {
  defaults: { requestsPerSecond: number; createsPerMinute: number };
  clock?: Clock;
  onLimited?: (kind: 'request' | 'create') => void;
}): RateLimits {
  const limiter = createRateLimiter(opts.clock ?? systemClock);
  return {
    admitRequest(viewer) {
      if (viewer.kind !== 'tenant') return;
      const perSecond = viewer.rates.requestsPerSecond ?? opts.defaults.requestsPerSecond;
      if (perSecond <= 0) return;
      const wait = limiter.take(`request:${viewer.tenantId}`, { perSecond, burst: Math.max(1, perSecond * 2) });
      if (wait === 0) return;
      opts.onLimited?.('request');
      throw new RateLimitedError(`Too many requests: the limit is ${perSecond} per second; retry in ${wait} s.`, wait);
    },
    admitCreate(tenantId, createsPerMinute) {
      const perMinute = createsPerMinute ?? opts.defaults.createsPerMinute;
      if (perMinute <= 0) return;
      const burst = Math.max(1, Math.ceil(perMinute / 6));
      const wait = limiter.take(`create:${tenantId}`, { perSecond: perMinute / 60, burst });
      if (wait === 0) return;
      opts.onLimited?.('create');
      throw new RateLimitedError(`Too many creates: the limit is ${perMinute} per minute; retry in ${wait} s.`, wait);
    },
  };
}
