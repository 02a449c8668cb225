import { expect, it } from 'vitest';
import { storable } from '../src/db/storable.ts';

it('makes strings, keys and nested values storable in PostgreSQL, leaving everything else alone', () => {
  const when = new Date(0);
  expect(storable({ a: 'ok', b: 'nul\u0000here', c: ['lone \ud800 high', 3, null, true], 'k\u0000': { d: 'x\udc00' }, when })).toEqual({
    a: 'ok',
    b: 'nul\uFFFDhere',
    c: ['lone \uFFFD high', 3, null, true],
    'k\uFFFD': { d: 'x\uFFFD' },
    when,
  });
  expect(storable('😀 emoji stays')).toBe('😀 emoji stays');
});
