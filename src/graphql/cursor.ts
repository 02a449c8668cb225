import { z } from 'zod';
import { isStorableInstant } from '../clock.ts';
import { InvalidInputError } from '../errors.ts';

/** A position in a list ordered by (created_at, id): opaque to clients, stable under inserts. */
export type Keyset = { createdAt: Date; id: string };

const cursorModel = z.object({ t: z.iso.datetime(), id: z.uuid() });

export function encodeCursor(position: Keyset): string {
  // The JSON of { t, id }, written out: an ISO instant and a uuid need no escaping (a page encodes one per row).
  return Buffer.from(`{"t":"${position.createdAt.toISOString()}","id":"${position.id}"}`).toString('base64url');
}

export function decodeCursor(cursor: string, argument: string): Keyset {
  try {
    const parsed = cursorModel.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    const createdAt = new Date(parsed.t);
    if (!isStorableInstant(createdAt)) throw new Error('not an instant of ours');
    return { createdAt, id: parsed.id };
  } catch {
    throw new InvalidInputError(`"${argument}" is not a cursor returned by this list.`, [
      { path: [argument], message: 'not a valid cursor' },
    ]);
  }
}

const MAX_PAGE_SIZE = 100;
const DEFAULT_PAGE_SIZE = 20;

/**
 * The page sizes for `resolveCursorConnection`, after refusing a `first` or `last` outside
 * 0..MAX_PAGE_SIZE as invalid input: the library would clamp a large one silently (the client would
 * not learn why its page is short) and fail on a negative one with an untyped error.
 */
export function pageSizes(args: { first?: number | null; last?: number | null }): { defaultSize: number; maxSize: number } {
  for (const argument of ['first', 'last'] as const) {
    const requested = args[argument];
    if (requested !== null && requested !== undefined && (!Number.isInteger(requested) || requested < 0 || requested > MAX_PAGE_SIZE)) {
      throw new InvalidInputError(`"${argument}" must be between 0 and ${MAX_PAGE_SIZE}.`, [
        { path: [argument], message: `must be between 0 and ${MAX_PAGE_SIZE}` },
      ]);
    }
  }
  return { defaultSize: DEFAULT_PAGE_SIZE, maxSize: MAX_PAGE_SIZE };
}
