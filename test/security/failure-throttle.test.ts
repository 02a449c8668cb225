import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthenticator } from '../../src/auth/authenticate.ts';
import { manualClock } from '../../src/clock.ts';
import { RateLimitedError, ServiceUnavailableError, UnauthenticatedError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { createTenantService } from '../../src/tenants/tenants.ts';
import { createTestDatabase } from '../support/database.ts';
import type { TestDatabase } from '../support/database.ts';

/**
 * The throttle on failed authentications, per client address: a burst of 20 failures, refilled at
 * 5 per second up to the burst; an address out of credit is refused (429, with how long to wait)
 * before the database is asked. Driven through the authenticator with the real key lookup on a real
 * database, and a clock that moves only when told. (test/security/authenticate-first.test.ts drives
 * the burst over HTTP.)
 */

const UNKNOWN = 'The API key is unknown or has been revoked.';

let database: TestDatabase;
let guesses = 0;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

function authenticator(options: { maxAddresses?: number } = {}) {
  const clock = manualClock();
  // No caching of answers: every guess that is admitted is a database read.
  const tenants = createTenantService(database.db, { adminApiKey: null, authCacheSeconds: 0, clock });
  const authenticate = createAuthenticator({ tenants, logger: createLogger('silent'), clock, ...options });
  /** One guess of a key never given out, from `address`: what the caller gets. */
  const guess = (address: string) => {
    guesses += 1;
    return authenticate(`Bearer og_guess-${guesses}`, address).catch((error: unknown) => error);
  };
  return { clock, guess };
}

/** Outcomes of `count` guesses in a row from `address`: 'denied' (401) or 'throttled' (429). */
async function guessInTurn(guess: (address: string) => Promise<unknown>, address: string, count: number): Promise<string[]> {
  const outcomes: string[] = [];
  for (let i = 0; i < count; i += 1) outcomes.push(outcome(await guess(address)));
  return outcomes;
}

function outcome(error: unknown): string {
  if (error instanceof UnauthenticatedError) {
    expect(error.message).toBe(UNKNOWN);
    return 'denied';
  }
  if (error instanceof RateLimitedError) return 'throttled';
  throw new Error(`unexpected outcome: ${String(error)}`);
}

const times = (count: number, value: string) => Array<string>(count).fill(value);

describe('the failed-authentication throttle', () => {
  it('allows a burst of 20, then refills 5 per second up to the burst; the refusal says when to retry', async () => {
    const { clock, guess } = authenticator();
    expect(await guessInTurn(guess, '10.0.0.1', 22)).toEqual([...times(20, 'denied'), ...times(2, 'throttled')]);
    const refused = await guess('10.0.0.1');
    expect(refused).toBeInstanceOf(RateLimitedError);
    expect((refused as RateLimitedError).retryAfterSeconds).toBe(1);
    expect((refused as RateLimitedError).message).toBe('Too many failed authentications from this address; retry in 1 s.');

    // Another address has its own credit.
    expect(await guessInTurn(guess, '10.0.0.2', 1)).toEqual(['denied']);

    clock.advance(200);
    expect(await guessInTurn(guess, '10.0.0.1', 2)).toEqual(['denied', 'throttled']);
    clock.advance(1_000);
    expect(await guessInTurn(guess, '10.0.0.1', 6)).toEqual([...times(5, 'denied'), 'throttled']);
    // A long pause refills to the burst, not beyond.
    clock.advance(60_000);
    expect(await guessInTurn(guess, '10.0.0.1', 21)).toEqual([...times(20, 'denied'), 'throttled']);
  });

  it('guesses sent together all pass before any has failed; the debt they leave is waited out at 5 per second', async () => {
    const { clock, guess } = authenticator();
    // All 30 are admitted (20 credit, none failed yet when each is checked): the credit is now -10.
    const together = await Promise.all(Array.from({ length: 30 }, () => guess('10.0.0.3')));
    expect(together.map(outcome)).toEqual(times(30, 'denied'));
    const refused = await guess('10.0.0.3');
    expect(refused).toBeInstanceOf(RateLimitedError);
    // One more credit is needed: 11 at 5 per second.
    expect((refused as RateLimitedError).retryAfterSeconds).toBe(3);
    clock.advance(2_000);
    expect(await guessInTurn(guess, '10.0.0.3', 1)).toEqual(['throttled']);
    clock.advance(200);
    expect(await guessInTurn(guess, '10.0.0.3', 2)).toEqual(['denied', 'throttled']);
  });

  it('remembers a bounded number of addresses: past it, the longest-known one is forgotten, and only then', async () => {
    const { guess } = authenticator({ maxAddresses: 2 });
    expect(await guessInTurn(guess, '10.0.0.4', 21)).toEqual([...times(20, 'denied'), 'throttled']);
    expect(await guessInTurn(guess, '10.0.0.5', 21)).toEqual([...times(20, 'denied'), 'throttled']);
    // Two addresses, both remembered.
    expect(await guessInTurn(guess, '10.0.0.4', 1)).toEqual(['throttled']);
    // A third one's failure makes room by forgetting the first.
    expect(await guessInTurn(guess, '10.0.0.6', 1)).toEqual(['denied']);
    expect(await guessInTurn(guess, '10.0.0.5', 1)).toEqual(['throttled']);
    expect(await guessInTurn(guess, '10.0.0.4', 1)).toEqual(['denied']);
  });

  it('a database that cannot be asked is a 503, not a failure counted against the address', async () => {
    const broken = await createTestDatabase();
    await broken.drop();
    const clock = manualClock();
    const tenants = createTenantService(broken.db, { adminApiKey: null, authCacheSeconds: 0, clock });
    const logged: string[] = [];
    const logger = createLogger('warn', { write: (line: string) => void logged.push(line) });
    const authenticate = createAuthenticator({ tenants, logger, clock });
    for (let i = 0; i < 25; i += 1) {
      await expect(authenticate(`Bearer og_guess-broken-${i}`, '10.0.0.7')).rejects.toBeInstanceOf(ServiceUnavailableError);
    }
    // The operator is told why, with the database's own error.
    expect(logged).toHaveLength(25);
    const line = JSON.parse(logged[0]!) as { msg: string; err?: { message?: string } };
    expect(line.msg).toBe('authentication failed: database unavailable');
    expect(line.err?.message).toMatch(/^Failed query: select .*"api_keys"/);
  });
});
