import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Signed, expiring links to locally stored videos. The signature covers the path (which holds
 * the key) and the expiry, so neither can be changed. The path is signed without any
 * PUBLIC_BASE_URL prefix: the reverse proxy strips that prefix before the gateway sees the
 * request, so both sides agree on what was signed.
 */

export const VIDEO_PATH_PREFIX = '/files/videos/';

const EXPIRES_PATTERN = /^\d{1,12}$/;

function signature(secret: string, key: string, expires: string): string {
  // The label keeps these MACs apart from other HMACs under the same secret (webhook tokens).
  return createHmac('sha256', secret).update(`video-file\n${VIDEO_PATH_PREFIX}${key}\n${expires}`).digest('base64url');
}

/** `/files/videos/<key>?expires=<unix seconds>&sig=<base64url>`, to append to the public base URL. */
export function signVideoPath(secret: string, key: string, expiresAt: Date): string {
  // Rounded down, so that a link never outlives the moment the caller asked for.
  const expires = String(Math.floor(expiresAt.getTime() / 1000));
  return `${VIDEO_PATH_PREFIX}${key}?expires=${expires}&sig=${signature(secret, key, expires)}`;
}

/** True when `sig` is the signature of (key, expires) and `expires` lies after `now`. */
export function verifyVideoSignature(secret: string, key: string, expires: string | null, sig: string | null, now: Date): boolean {
  if (expires === null || sig === null || !EXPIRES_PATTERN.test(expires)) return false;
  // Strings are compared, not decoded bytes: base64url decoding ignores stray characters and the
  // spare low bits of the last one, so a changed character could decode to the same bytes.
  const expected = Buffer.from(signature(secret, key, expires));
  const given = Buffer.from(sig);
  const valid = given.length === expected.length && timingSafeEqual(given, expected);
  return valid && Number(expires) * 1000 > now.getTime();
}
