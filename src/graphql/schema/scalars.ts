import { Kind } from 'graphql';
import { isStorableInstant } from '../../clock.ts';
import { InvalidInputError } from '../../errors.ts';
import { builder } from '../builder.ts';

function parseDateTime(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : null;
  if (date === null || Number.isNaN(date.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(value as string)) {
    throw new InvalidInputError('DateTime must be an ISO 8601 date-time string, e.g. 2026-01-31T12:00:00Z.', []);
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
