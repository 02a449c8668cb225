import { describe, expect, it } from 'vitest';
import { signVideoPath, verifyVideoSignature } from '../../src/storage/signed-url.ts';

const SECRET = 'signed-url-secret-0123456789abcdef';
const KEY = 'tenant/task/1.mp4';
const EXPIRES_AT = new Date('2030-06-01T12:00:00Z');
const BEFORE = new Date('2030-06-01T11:59:59Z');

function parts(path: string) {
  const url = new URL(path, 'http://x');
  return { path: url.pathname, expires: url.searchParams.get('expires'), sig: url.searchParams.get('sig') };
}

describe('signed video paths', () => {
  it('signs the path and the expiry in unix seconds', () => {
    const signed = parts(signVideoPath(SECRET, KEY, EXPIRES_AT));
    expect(signed.path).toBe(`/files/videos/${KEY}`);
    expect(signed.expires).toBe(String(EXPIRES_AT.getTime() / 1000));
    expect(signed.sig).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(verifyVideoSignature(SECRET, KEY, signed.expires, signed.sig, BEFORE)).toBe(true);
  });

  it('rounds the expiry down, so a link never outlives the requested moment', () => {
    const signed = parts(signVideoPath(SECRET, KEY, new Date(EXPIRES_AT.getTime() + 999)));
    expect(signed.expires).toBe(String(EXPIRES_AT.getTime() / 1000));
  });

  it('refuses an expired link, from the expiry second on', () => {
    const { expires, sig } = parts(signVideoPath(SECRET, KEY, EXPIRES_AT));
    expect(verifyVideoSignature(SECRET, KEY, expires, sig, new Date(EXPIRES_AT.getTime() - 1))).toBe(true);
    expect(verifyVideoSignature(SECRET, KEY, expires, sig, EXPIRES_AT)).toBe(false);
  });

  it('refuses any changed character of the signature', () => {
    const { expires, sig } = parts(signVideoPath(SECRET, KEY, EXPIRES_AT));
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < (sig ?? '').length; i++) {
      const original = (sig ?? '')[i] ?? '';
      // The neighbour in the alphabet: for the last character that can differ only in the bits
      // that base64url decoding drops, which must still be refused.
      const replacement = alphabet[(alphabet.indexOf(original) + 1) % alphabet.length] ?? 'A';
      const tampered = `${sig?.slice(0, i)}${replacement}${sig?.slice(i + 1)}`;
      expect(verifyVideoSignature(SECRET, KEY, expires, tampered, BEFORE), `position ${i}`).toBe(false);
    }
  });

  it('refuses another key, another expiry, another secret, and missing or malformed parameters', () => {
    const { expires, sig } = parts(signVideoPath(SECRET, KEY, EXPIRES_AT));
    expect(verifyVideoSignature(SECRET, 'tenant/task/2.mp4', expires, sig, BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, String(Number(expires) + 3600), sig, BEFORE)).toBe(false);
    expect(verifyVideoSignature('another-secret-0123456789abcdef0123', KEY, expires, sig, BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, null, sig, BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, expires, null, BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, expires, '', BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, `${expires}.0`, sig, BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, ` ${expires}`, sig, BEFORE)).toBe(false);
    expect(verifyVideoSignature(SECRET, KEY, expires, `${sig}=`, BEFORE)).toBe(false);
  });
});
