import { describe, expect, it } from 'vitest';
import { createRateLimits } from '../../src/auth/rate-limits.ts';
import { manualClock } from '../../src/clock.ts';
import { RateLimitedError } from '../../src/errors.ts';
import type { Viewer } from '../../src/tenants/tenants.ts';

/**
 * The per-tenant rates, with a clock that moves only when told: how many requests and creates a
 * burst allows, how fast they come back, and what a refused caller is told (the message and the
 * Retry-After seconds of the 429). test/hardening/limits.test.ts drives the request rate over HTTP.
 */

const DEFAULTS = { requestsPerSecond: 10, createsPerMinute: 60 };

function tenant(id: string, rates: Partial<{ requestsPerSecond: number | null; createsPerMinute: number | null }> = {}): Viewer {
  return { kind: 'tenant', tenantId: id, apiKeyId: `key-${id}`, rates: { requestsPerSecond: null, createsPerMinute: null, ...rates } };
}

function limits(defaults = DEFAULTS) {
  const clock = manualClock(1_000_000);
  const limited: string[] = [];
  const rates = createRateLimits({ defaults, clock, onLimited: (kind) => limited.push(kind) });
  return { clock, limited, rates };
}

/** What `admit` does: 'ok', or the refusal's Retry-After seconds and message. */
function attempt(admit: () => void): 'ok' | { retryAfter: number; message: string } {
  try {
    admit();
    return 'ok';
  } catch (error) {
    if (!(error instanceof RateLimitedError)) throw error;
    expect(error.code).toBe('RATE_LIMITED');
    return { retryAfter: error.retryAfterSeconds, message: error.message };
  }
}

function attempts(count: number, admit: () => void) {
  return Array.from({ length: count }, () => attempt(admit));
}

describe('request rate', () => {
  it('allows a burst of twice the rate, then refuses with Retry-After, and refills at the rate', () => {
    const { clock, limited, rates } = limits();
    const viewer = tenant('a', { requestsPerSecond: 2 });
    const admit = () => rates.admitRequest(viewer);
    expect(attempts(4, admit)).toEqual(Array(4).fill('ok'));
    expect(attempt(admit)).toEqual({ retryAfter: 1, message: 'Too many requests: the limit is 2 per second; retry in 1 s.' });
    expect(limited).toEqual(['request']);
    // Half a second gives back one request (2 per second), and no more.
    clock.advance(500);
    expect(attempts(2, admit)).toEqual(['ok', expect.objectContaining({ retryAfter: 1 })]);
  });

  it('tells a slow-rate tenant how long it must really wait', () => {
    const { clock, rates } = limits({ requestsPerSecond: 0.25, createsPerMinute: 60 });
    const admit = () => rates.admitRequest(tenant('slow'));
    // The burst is at least one request.
    expect(attempt(admit)).toBe('ok');
    expect(attempt(admit)).toEqual({ retryAfter: 4, message: 'Too many requests: the limit is 0.25 per second; retry in 4 s.' });
    // After 3 s, three quarters of a request are back: one more second to wait.
    clock.advance(3_000);
    expect(attempt(admit)).toEqual(expect.objectContaining({ retryAfter: 1 }));
  });

  it('keeps each tenant to its own bucket; a tenant rate of 0 and an admin are never limited', () => {
    const { rates } = limits();
    const busy = tenant('busy', { requestsPerSecond: 1 });
    expect(attempts(3, () => rates.admitRequest(busy))).toEqual(['ok', 'ok', expect.objectContaining({ retryAfter: 1 })]);
    expect(attempt(() => rates.admitRequest(tenant('quiet', { requestsPerSecond: 1 })))).toBe('ok');
    expect(attempts(100, () => rates.admitRequest(tenant('unlimited', { requestsPerSecond: 0 })))).toEqual(Array(100).fill('ok'));
    expect(attempts(100, () => rates.admitRequest({ kind: 'admin' }))).toEqual(Array(100).fill('ok'));
  });

  it('refuses without an onLimited hook too', () => {
    const rates = createRateLimits({ defaults: { requestsPerSecond: 1, createsPerMinute: 1 }, clock: manualClock() });
    expect(attempts(3, () => rates.admitRequest(tenant('a')))).toEqual(['ok', 'ok', expect.objectContaining({ retryAfter: 1 })]);
    expect(attempts(2, () => rates.admitCreate('a', null))).toEqual(['ok', expect.objectContaining({ retryAfter: 60 })]);
  });
});

describe('create rate', () => {
  it('allows a burst of a tenth of a minute, then refuses with the seconds until the next create', () => {
    const { clock, limited, rates } = limits();
    const admit = () => rates.admitCreate('a', 60);
    expect(attempts(10, admit)).toEqual(Array(10).fill('ok'));
    expect(attempt(admit)).toEqual({ retryAfter: 1, message: 'Too many creates: the limit is 60 per minute; retry in 1 s.' });
    expect(limited).toEqual(['create']);
    clock.advance(2_000);
    expect(attempts(3, admit)).toEqual(['ok', 'ok', expect.objectContaining({ retryAfter: 1 })]);
  });

  it('counts the wait from what has come back at a slow rate', () => {
    const { clock, rates } = limits();
    const admit = () => rates.admitCreate('slow', 6);
    expect(attempt(admit)).toBe('ok');
    expect(attempt(admit)).toEqual({ retryAfter: 10, message: 'Too many creates: the limit is 6 per minute; retry in 10 s.' });
    clock.advance(5_000);
    expect(attempt(admit)).toEqual(expect.objectContaining({ retryAfter: 5 }));
    clock.advance(5_000);
    expect(attempt(admit)).toBe('ok');
  });

  it('uses the configured default when the tenant has none, and 0 turns it off', () => {
    const { rates } = limits({ requestsPerSecond: 10, createsPerMinute: 12 });
    expect(attempts(3, () => rates.admitCreate('a', null))).toEqual(['ok', 'ok', expect.objectContaining({ retryAfter: 5 })]);
    expect(attempts(50, () => rates.admitCreate('b', 0))).toEqual(Array(50).fill('ok'));
  });

  it('keeps each tenant to its own creates', () => {
    const { rates } = limits();
    expect(attempts(2, () => rates.admitCreate('a', 6)).at(-1)).toEqual(expect.objectContaining({ retryAfter: 10 }));
    expect(attempt(() => rates.admitCreate('b', 6))).toBe('ok');
  });

  it('keeps creates apart from requests: a tenant out of creates may still read', () => {
    const { rates } = limits();
    expect(attempts(11, () => rates.admitCreate('a', 60)).at(-1)).toEqual(expect.objectContaining({ retryAfter: 1 }));
    expect(attempt(() => rates.admitRequest(tenant('a')))).toBe('ok');
  });
});
