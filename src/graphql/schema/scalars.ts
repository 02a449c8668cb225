import { Kind } from 'graphql';
import { isStorableInstant } from '../../clock.ts';
import { InvalidInputError } from '../../errors.ts';
import { builder } from '../builder.ts';

/** RFC 3339 with its offset required: a time without one would be read in the server's local zone. */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/i;

/** Whether the fields name a real calendar instant (no 2026-02-30, no 24:00, no 60th second). */
function isRealDateTime(fields: number[]): boolean {
  const [year, month, day, hour, minute, second] = fields as [number, number, number, number, number, number];
  const check = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  check.setUTCFullYear(year);
  return (
    check.getUTCFullYear() === year &&
    check.getUTCMonth() === month - 1 &&
    check.getUTCDate() === day &&
    check.getUTCHours() === hour &&
    check.getUTCMinutes() === minute &&
    check.getUTCSeconds() === second
  );
}

function parseDateTime(value: unknown): Date {
  const match = typeof value === 'string' ? DATE_TIME.exec(value) : null;
  const date = match === null ? null : new Date(value as string);
  if (match === null || date === null || Number.isNaN(date.getTime()) || !isRealDateTime(match.slice(1, 7).map(Number))) {
    throw new InvalidInputError('DateTime must be an ISO 8601 date-time string with its offset, e.g. 2026-01-31T12:00:00Z.', []);
  }
  if (!isStorableInstant(date)) {
    throw new InvalidInputError('DateTime must be between the years 0001 and 9999 in UTC.', []);
  }
  return date;
}

builder.scalarType('DateTime', {
  description: 'An instant, as an ISO 8601 date-time string in UTC.',
  serialize: (value) => value.toISOString(),
  parseValue: parseDateTime,
  parseLiteral: (ast) => parseDateTime(ast.kind === Kind.STRING ? ast.value : null),
});
