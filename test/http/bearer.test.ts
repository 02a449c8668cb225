import { describe, expect, it } from 'vitest';
import { bearerToken } from '../../src/http/bearer.ts';

describe('bearerToken', () => {
  it.each([
    ['Bearer abc', 'abc'],
    ['bearer abc', 'abc'],
    ['  Bearer   abc  ', 'abc'],
  ])('reads %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  it.each([undefined, null, '', 'Bearer', 'Bearer ', 'Basic abc', 'Bearer a b', 'abc'])('finds no token in %j', (header) => {
    expect(bearerToken(header)).toBeNull();
  });
});
