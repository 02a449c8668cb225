import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createKeySessions } from '../../src/auth/key-sessions.ts';
import { createLogger } from '../../src/logger.ts';
import { createTenantService } from '../../src/tenants/tenants.ts';
import { createTestDatabase } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * The connections an instance holds by API key, and the periodic check that ends those of keys
 * revoked elsewhere (test/tenants/revocation.test.ts drives it over WebSocket and SSE between two
 * gateways). Here the key lookup is the real one on a real database; only the check's interval is
 * driven by hand (vi's fake setInterval), so each check happens when the test says, and a check
 * that does not happen can be told from one that has not happened yet.
 */

const INTERVAL_MS = 1_000;

let database: TestDatabase;
let tenants: ReturnType<typeof createTenantService>;
let tenantId: string;

beforeAll(async () => {
  database = await createTestDatabase();
  tenants = createTenantService(database.db, { adminApiKey: null, authCacheSeconds: 0 });
  tenantId = (await tenants.createTenant({ name: 'Sessions' })).tenant.id;
});
afterAll(async () => {
  await database?.drop();
});
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
});
afterEach(() => {
  vi.useRealTimers();
});

async function newKey(): Promise<string> {
  const key = await tenants.createApiKey(tenantId);
  if (key === null) throw new Error('the tenant is gone');
  return key.id;
}

/**
 * Key sessions whose lookups are recorded: `asked` holds each lookup's key ids, and `checked()`
 * resolves when the lookup in flight (or the next one) has answered and its check is done.
 */
function sessions(options: { hold?: Promise<void>; failures?: number } = {}) {
  let failures = options.failures ?? 0;
  const asked: string[][] = [];
  const logged: string[] = [];
  let answered: () => void = () => {};
  let done = new Promise<void>((resolve) => {
    answered = resolve;
  });
  const logger = createLogger('warn', { write: (line: string) => void logged.push(line) });
  const keySessions = createKeySessions({
    intervalMs: INTERVAL_MS,
    logger,
    async liveKeys(ids) {
      asked.push(ids);
      await options.hold;
      try {
        if (failures-- > 0) throw new Error('database unavailable');
        return await tenants.liveKeys(ids);
      } finally {
        // The check ends the revoked keys' connections right after this answer, in the same turn.
        setImmediate(() => {
          answered();
          done = new Promise<void>((resolve) => {
            answered = resolve;
          });
        });
      }
    },
  });
  const checked = () => done;
  return { keySessions, asked, logged, checked };
}

describe('key sessions', () => {
  it('ends the connections of a key revoked since the last check, and only those', async () => {
    const [kept, revoked] = [await newKey(), await newKey()];
    const { keySessions, asked, checked } = sessions();
    const ended: string[] = [];
    keySessions.open(kept, () => ended.push('kept'));
    keySessions.open(revoked, () => ended.push('revoked 1'));
    keySessions.open(revoked, () => ended.push('revoked 2'));
    keySessions.start();
    try {
      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(ended).toEqual([]);

      await tenants.revokeApiKey(revoked);
      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(ended).toEqual(['revoked 1', 'revoked 2']);
      expect(asked).toEqual([
        [kept, revoked],
        [kept, revoked],
      ]);

      // The revoked key is forgotten: the next check asks only about the live one.
      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(asked.at(-1)).toEqual([kept]);
    } finally {
      keySessions.stop();
    }
  });

  it('does not check while no connection is open, nor after stop', async () => {
    const key = await newKey();
    const { keySessions, asked, checked } = sessions();
    keySessions.start();
    vi.advanceTimersByTime(5 * INTERVAL_MS);
    expect(asked).toEqual([]);

    const forget = keySessions.open(key, () => {});
    vi.advanceTimersByTime(INTERVAL_MS);
    await checked();
    expect(asked).toEqual([[key]]);

    keySessions.stop();
    vi.advanceTimersByTime(5 * INTERVAL_MS);
    expect(asked).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
    forget();
  });

  it('forgets a closed connection: a key with none left is not asked about, one with another still open is', async () => {
    const [single, shared] = [await newKey(), await newKey()];
    const { keySessions, asked, checked } = sessions();
    const ended: string[] = [];
    keySessions.open(single, () => ended.push('single'))();
    const forgetFirst = keySessions.open(shared, () => ended.push('shared 1'));
    keySessions.open(shared, () => ended.push('shared 2'));
    forgetFirst();
    await tenants.revokeApiKey(single);
    await tenants.revokeApiKey(shared);
    keySessions.start();
    try {
      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(asked).toEqual([[shared]]);
      expect(ended).toEqual(['shared 2']);
    } finally {
      keySessions.stop();
    }
  });

  it('runs one check at a time: intervals that pass while the lookup is slow start no other', async () => {
    const key = await newKey();
    let release: () => void = () => {};
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { keySessions, asked, checked } = sessions({ hold });
    keySessions.open(key, () => {});
    keySessions.start();
    try {
      vi.advanceTimersByTime(INTERVAL_MS);
      vi.advanceTimersByTime(3 * INTERVAL_MS);
      expect(asked).toHaveLength(1);
      release();
      await checked();
      // Once it has answered, the next interval checks again.
      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(asked).toHaveLength(2);
    } finally {
      keySessions.stop();
    }
  });

  it('a connection whose close throws does not keep the others of its key open', async () => {
    const key = await newKey();
    const { keySessions, logged } = sessions();
    const ended: string[] = [];
    keySessions.open(key, () => {
      throw new Error('socket already gone');
    });
    keySessions.open(key, () => ended.push('second'));
    keySessions.end(key);
    expect(ended).toEqual(['second']);
    expect(logged.join('')).toContain('closing a connection of a revoked key failed');
    expect(logged.join('')).toContain('socket already gone');
  });

  it('ending a key with no connection here, and forgetting a connection its key already ended, are no-ops', async () => {
    const key = await newKey();
    const { keySessions } = sessions();
    // Revoking a key ends its connections on this instance, whether or not it has any.
    expect(() => keySessions.end(key)).not.toThrow();
    // A connection that the revocation closed forgets itself as it goes.
    const ended: string[] = [];
    const forget = keySessions.open(key, () => ended.push('ended'));
    keySessions.end(key);
    expect(() => forget()).not.toThrow();
    expect(ended).toEqual(['ended']);
  });

  it('a lookup that fails is logged and tried again at the next interval', async () => {
    const key = await newKey();
    const { keySessions, asked, logged, checked } = sessions({ failures: 1 });
    const ended: string[] = [];
    keySessions.open(key, () => ended.push('ended'));
    await tenants.revokeApiKey(key);
    keySessions.start();
    try {
      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(ended).toEqual([]);
      expect(logged.join('')).toContain('could not check for revoked keys');
      expect(logged.join('')).toContain('database unavailable');

      vi.advanceTimersByTime(INTERVAL_MS);
      await checked();
      expect(ended).toEqual(['ended']);
      expect(asked).toEqual([[key], [key]]);
    } finally {
      keySessions.stop();
    }
  });
});
