import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../src/graphql/cursor.ts';

describe('list cursors', () => {
  it('are the base64url JSON of { t, id }, and decode to the same position', () => {
    const position = { createdAt: new Date('2026-12-01T16:59:59.123Z'), id: '0b8f3a52-4c1e-4a8e-9d2f-2f4a6b8c0d1e' };
    const cursor = encodeCursor(position);
    expect(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))).toEqual({ t: '2026-12-01T16:59:59.123Z', id: position.id });
    expect(decodeCursor(cursor, 'after')).toEqual(position);
  });
});
