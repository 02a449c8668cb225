import { z } from 'zod';
import { InvalidInputError } from '../errors.ts';

/** A position in a list ordered by (created_at, id): opaque to clients, stable under inserts. */
export type Keyset = { createdAt: Date; id: string };

const cursorModel = z.object({ t: z.iso.datetime(), id: z.uuid() });

export function encodeCursor(position: Keyset): string {
  return Buffer.from(JSON.stringify({ t: position.createdAt.toISOString(), id: position.id })).toString('base64url');
}

export function decodeCursor(cursor: string, argument: string): Keyset {
  try {
    const parsed = cursorModel.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    return { createdAt: new Date(parsed.t), id: parsed.id };
  } catch {
    throw new InvalidInputError(`"${argument}" is not a cursor returned by this list.`, [
      { path: [argument], message: 'not a valid cursor' },
    ]);
  }
}

export const MAX_PAGE_SIZE = 100;
const DEFAULT_PAGE_SIZE = 20;

/** The page size asked for, bounded so that no request can read an unbounded number of rows. */
export function pageSize(requested: number | null | undefined, argument: string): number {
  if (requested === null || requested === undefined) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(requested) || requested < 0 || requested > MAX_PAGE_SIZE) {
    throw new InvalidInputError(`"${argument}" must be between 0 and ${MAX_PAGE_SIZE}.`, [
      { path: [argument], message: `must be between 0 and ${MAX_PAGE_SIZE}` },
    ]);
  }
  return requested;
}
