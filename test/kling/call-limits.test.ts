import { describe, expect, it } from 'vitest';
import { createKlingClient } from '../../src/kling/client.ts';
import { KlingError } from '../../src/kling/errors.ts';

/** A fetch that never answers: it only ends when the client's own deadline aborts it. */
function silentFetch() {
  let calls = 0;
  const fetchImpl = (_input: string | URL | Request, init?: RequestInit) => {
    calls += 1;
    return new Promise<Response>((_resolve, reject) => {
      init?.signal?.addEventListener('abort', () => reject(init.signal?.reason));
    });
  };
  return { calls: () => calls, fetch: fetchImpl as typeof fetch };
}

describe('per-call limits and the create time limit', () => {
  it('a getTask with tighter limits makes one short attempt, however patient the client is', async () => {
    const silent = silentFetch();
    const client = createKlingClient({
      baseUrl: 'http://127.0.0.1:9',
      apiKey: 'k',
      fetch: silent.fetch,
      timeoutMs: 10_000,
      maxAttempts: 4,
    });
    const started = performance.now();
    const error = await client.getTask({ taskId: 't' }, { timeoutMs: 50, maxAttempts: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KlingError);
    expect((error as KlingError).message).toContain('within 50 ms');
    expect(silent.calls()).toBe(1);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('a create whose every attempt and lookup times out ends within createTimeLimitMs', async () => {
    const silent = silentFetch();
    const client = createKlingClient({
      baseUrl: 'http://127.0.0.1:9',
      apiKey: 'k',
      fetch: silent.fetch,
      timeoutMs: 40,
      maxAttempts: 3,
      backoff: { baseMs: 5, maxMs: 20 },
    });
    // 3 creates, 2 lookups before the retries, 3 attempts of the final lookup: 8 timeouts; 4 waits of at most 1 s.
    expect(client.createTimeLimitMs).toBe(8 * 40 + 4 * 1_000);
    const started = performance.now();
    const body = { model_name: 'kling-video-o1', prompt: 'p', mode: 'std', external_task_id: 'x' } as never;
    await expect(client.createTask(body)).rejects.toBeInstanceOf(KlingError);
    expect(performance.now() - started).toBeLessThan(client.createTimeLimitMs);
    expect(silent.calls()).toBeGreaterThanOrEqual(5);
  });
});
