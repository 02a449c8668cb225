import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const KEY_PREFIX = 'og_';
const DISPLAY_PREFIX_LENGTH = KEY_PREFIX.length + 8;

export function hashApiKey(key: string): string {
  return keyDigest(key).toString('hex');
}

/** The SHA-256 of a key: hashApiKey's bytes, also what constant-time comparisons compare. */
export function keyDigest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** A new random key: the caller sees `key` once; only `hash` and `prefix` are stored. */
export function generateApiKey(): { key: string; hash: string; prefix: string } {
  const key = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, hash: hashApiKey(key), prefix: key.slice(0, DISPLAY_PREFIX_LENGTH) };
}

/** Compares two secrets in time independent of where they differ (hashing equalises lengths). */
export function secretsEqual(a: string, b: string): boolean {
  return timingSafeEqual(keyDigest(a), keyDigest(b));
}
