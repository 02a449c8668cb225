import type { Logger } from '../logger.ts';

/**
 * The long-lived connections of this instance (WebSockets, SSE streams) by the API key that opened
 * them, so that revoking a key ends them: at once on the instance that revoked it, and within one
 * check interval on every other instance (each asks the database which of its keys are still live).
 */
export type KeySessions = {
  /** Registers a connection of `apiKeyId`; `end` closes it. Returns the function that forgets it. */
  open(apiKeyId: string, end: () => void): () => void;
  /** Ends every connection of the key on this instance. */
  end(apiKeyId: string): void;
  start(): void;
  stop(): void;
};

export function createKeySessions(deps: {
  /** Which of these key ids are still live (not revoked). */
  liveKeys(ids: string[]): Promise<Set<string>>;
  intervalMs: number;
  logger: Logger;
}): KeySessions {
  const byKey = new Map<string, Set<() => void>>();
  let timer: NodeJS.Timeout | null = null;
  let checking = false;

  const end = (apiKeyId: string) => {
    const ends = byKey.get(apiKeyId);
    if (ends === undefined) return;
    byKey.delete(apiKeyId);
    for (const close of ends) {
      try {
        close();
      } catch (error) {
        deps.logger.warn({ err: error }, 'closing a connection of a revoked key failed');
      }
    }
  };

  async function check(): Promise<void> {
    if (checking || byKey.size === 0) return;
    checking = true;
    try {
      const ids = [...byKey.keys()];
      const live = await deps.liveKeys(ids);
      for (const id of ids) if (!live.has(id)) end(id);
    } catch (error) {
      deps.logger.warn({ err: error }, 'could not check for revoked keys; trying again next interval');
    } finally {
      checking = false;
    }
  }

  return {
    open(apiKeyId, close) {
      let ends = byKey.get(apiKeyId);
      if (ends === undefined) {
        ends = new Set();
        byKey.set(apiKeyId, ends);
      }
      ends.add(close);
      return () => {
        const current = byKey.get(apiKeyId);
        current?.delete(close);
        if (current?.size === 0) byKey.delete(apiKeyId);
      };
    },
    end,
    start() {
      timer ??= setInterval(() => void check(), deps.intervalMs);
      timer.unref();
    },
    stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
    },
  };
}
