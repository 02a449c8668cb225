type ByteRange = { start: number; end: number };

/**
 * A single `bytes=` range of a `size`-byte body, `end` inclusive; null means "ignore the header and
 * send everything": RFC 9110 lets a server ignore a Range it does not serve (several ranges,
 * another unit) and says to ignore an invalid one.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  const match = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const last = match[2] === '' ? Number.POSITIVE_INFINITY : Number(match[2]);
  if (last < start) return null; // syntactically invalid: RFC 9110 says to ignore it
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(last, size - 1) };
}
