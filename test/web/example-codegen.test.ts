import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from '@graphql-codegen/cli';
import { describe, expect, it } from 'vitest';
import config from '../../examples/web/codegen.ts';

const appDir = fileURLToPath(new URL('../../examples/web/', import.meta.url));

describe("the example app's generated types (examples/web/src/gql)", () => {
  it('match the schema and the operations: `npm run codegen -w examples/web` leaves them unchanged', async () => {
    const outputs: { filename: string; content: string }[] = await generate({ ...config, cwd: appDir, silent: true }, false);
    expect(outputs.map((output) => output.filename).sort()).toEqual(['src/gql/gql.ts', 'src/gql/graphql.ts', 'src/gql/index.ts']);
    for (const output of outputs) {
      const committed = readFileSync(join(appDir, output.filename), 'utf8');
      expect(committed === output.content, `${output.filename} is stale: run npm run codegen -w examples/web`).toBe(true);
    }
  });
});
