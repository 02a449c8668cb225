/**
 * Wall-clock time, injected wherever time decides an outcome (auth cache, rate limits, watch
 * retries, month boundaries, deadlines), so that tests set the time instead of waiting for it.
 */
export type Clock = {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
};

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told: for tests. */
export function manualClock(start = Date.now()): Clock & { advance(ms: number): void; set(ms: number): void } {
  let current = start;
  return {
    now: () => current,
    advance(ms) {
      current += ms;
    },
    set(ms) {
      current = ms;
    },
  };
}

/**
 * Whether an instant can be stored and compared in the database: years 1 to 9999 in UTC (a
 * DateTime such as 0000-01-01T00:00:00Z, or 9999-12-31T23:59:59-14:00, which is year 10000 in
 * UTC, is valid ISO 8601 but not a PostgreSQL timestamp that round-trips).
 */
export function isStorableInstant(date: Date): boolean {
  const year = date.getUTCFullYear();
  return !Number.isNaN(date.getTime()) && year >= 1 && year <= 9999;
}
