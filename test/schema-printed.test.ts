import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { printedSchema, schemaFile } from '../src/graphql/print-schema.ts';

it('schema/schema.graphql matches the Pothos schema (run `npm run schema:print`)', () => {
  expect(readFileSync(schemaFile, 'utf8')).toBe(printedSchema());
});
