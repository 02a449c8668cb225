/** Settings for tests that send many requests: the per-tenant limiters are switched off (0 = off). */
export const NO_RATE_LIMITS = { RATE_LIMIT_REQUESTS_PER_SECOND: '0', RATE_LIMIT_CREATES_PER_MINUTE: '0' };

/** Runs `work` over `items` with at most `concurrency` calls in flight; results keep the input order. */
export async function mapPool<T, R>(items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
