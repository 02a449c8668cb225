import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { TestProject } from 'vitest/node';
import { connectPglite } from '../../src/db/database.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A dump of an in-memory PGlite database with every migration applied; '' on PostgreSQL. */
    pgliteSnapshot: string;
  }
}

/**
 * Global setup (vitest.config.ts): on PGlite, migrates one in-memory database once per run and
 * dumps it to a file, from which createTestDatabase (database.ts) starts each test database. An
 * empty PGlite database costs seconds of initdb at every start; loading the dump, about half a
 * second. Each database still runs `migrate()`, which finds every migration applied.
 */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.DATABASE_URL) {
    project.provide('pgliteSnapshot', '');
    return async () => {};
  }
  const database = await connectPglite(null);
  const dir = await mkdtemp(join(tmpdir(), 'og-pglite-'));
  try {
    await database.migrate();
    const client = (database.db as unknown as { $client: PGlite }).$client;
    const dump = await client.dumpDataDir('none');
    const file = join(dir, 'migrated.tar');
    await writeFile(file, Buffer.from(await dump.arrayBuffer()));
    project.provide('pgliteSnapshot', file);
  } finally {
    await database.close();
  }
  return () => rm(dir, { recursive: true, force: true });
}
