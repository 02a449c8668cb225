import { readFileSync } from 'node:fs';
import { z } from 'zod';

const persistedOperationsModel = z.record(z.string().min(1), z.string().min(1));

/** PERSISTED_OPERATIONS_FILE: a JSON object of operation id → document; read once, at start. */
export function readPersistedOperations(file: string): ReadonlyMap<string, string> {
  return new Map(Object.entries(persistedOperationsModel.parse(JSON.parse(readFileSync(file, 'utf8')))));
}
