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
