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

export function createRateLimiter(now: () => number = () => performance.now()): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key, { perSecond, burst }) {
      const time = now();
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
