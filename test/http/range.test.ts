import { describe, expect, it } from 'vitest';
import { parseRange } from '../../src/http/range.ts';

describe('parseRange', () => {
  it.each([
    ['bytes=10-99', { start: 10, end: 99 }],
    ['bytes=0-0', { start: 0, end: 0 }],
    ['bytes=100-', { start: 100, end: 199 }],
    ['bytes=-50', { start: 150, end: 199 }],
    ['bytes=-500', { start: 0, end: 199 }],
    ['bytes=190-5000', { start: 190, end: 199 }],
    [' bytes=1-2 ', { start: 1, end: 2 }],
  ])('reads %s of 200 bytes', (header, range) => {
    expect(parseRange(header, 200)).toEqual(range);
  });

  it.each(['bytes=200-', 'bytes=250-300', 'bytes=-0'])('finds %s of 200 bytes unsatisfiable', (header) => {
    expect(parseRange(header, 200)).toBe('unsatisfiable');
  });

  it('finds any range of an empty body unsatisfiable', () => {
    expect(parseRange('bytes=-5', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
  });

  // An invalid range is ignored even when it also starts past the end (RFC 9110 §14.1.1).
  it.each([undefined, '', 'bytes=-', 'bytes=0-1,5-9', 'bytes=9-1', 'bytes=300-250', 'items=0-5', 'bytes=abc'])('ignores %s', (header) => {
    expect(parseRange(header, 200)).toBeNull();
  });
});
