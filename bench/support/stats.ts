export type Percentiles = { count: number; p50: number; p99: number; mean: number; max: number };

/** Nearest-rank percentiles of raw samples (milliseconds, say); NaN entries are skipped. */
export function percentiles(samples: ArrayLike<number>): Percentiles {
  const values = Array.from(samples).filter((value) => !Number.isNaN(value));
  values.sort((a, b) => a - b);
  const rank = (p: number) => values[Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1))] ?? Number.NaN;
  const sum = values.reduce((total, value) => total + value, 0);
  return {
    count: values.length,
    p50: rank(50),
    p99: rank(99),
    mean: values.length === 0 ? Number.NaN : sum / values.length,
    max: values.at(-1) ?? Number.NaN,
  };
}

export function median(values: number[]): number {
  return percentiles(values).p50;
}

/** Microseconds on the monotonic clock that V8 stamps CPU profiles with (CLOCK_MONOTONIC on Linux). */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
