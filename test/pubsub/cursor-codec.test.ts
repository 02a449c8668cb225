import { describe, expect, it } from 'vitest';
import { createCursorCodec } from '../../src/pubsub/change-log.ts';

const SECRET = 'a-deployment-secret-of-32-characters!';

describe('change cursors', () => {
  const codec = createCursorCodec(SECRET);

  it('round-trip, the same position always giving the same cursor', () => {
    for (const position of [
      { txid: 0n, seq: 0n },
      { txid: 825n, seq: 22n },
      { txid: 2n ** 63n - 1n, seq: 2n ** 63n - 1n },
    ]) {
      const cursor = codec.encode(position);
      expect(codec.decode(cursor)).toEqual(position);
      expect(codec.encode(position)).toBe(cursor);
    }
  });

  it('show nothing of the position: neighbouring positions share no visible part', () => {
    const a = codec.encode({ txid: 825n, seq: 22n }).slice(3);
    const b = codec.encode({ txid: 825n, seq: 23n }).slice(3);
    let shared = 0;
    while (shared < a.length && a[shared] === b[shared]) shared += 1;
    expect(shared).toBeLessThan(4);
    expect(Buffer.from(a, 'base64url').toString('latin1')).not.toContain('825');
  });

  it('refuse altered, forged, truncated and foreign cursors', () => {
    const cursor = codec.encode({ txid: 825n, seq: 22n });
    const flipped = `${cursor.slice(0, -2)}${cursor.at(-2) === 'A' ? 'B' : 'A'}${cursor.at(-1)}`;
    expect(codec.decode(flipped)).toBeNull();
    expect(codec.decode(cursor.slice(0, -4))).toBeNull();
    expect(codec.decode(`c1.${Buffer.from('825.22').toString('base64url')}`)).toBeNull();
    expect(codec.decode('')).toBeNull();
    expect(codec.decode(`c1.${'A'.repeat(5000)}`)).toBeNull();
    expect(createCursorCodec('another-deployment-secret-32-chars!!').decode(cursor)).toBeNull();
  });
});
