import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export function toGlobalId(typename: string, id: string): string {
  return encodeGlobalID(typename, id);
}

/**
 * The database id inside a Relay global id of the given type, or null for anything else, so that a
 * malformed id, an id of another type and an unknown id all look the same to the caller.
 */
export function fromGlobalId(globalId: string, typename: string): string | null {
  try {
    const decoded = decodeGlobalID(globalId);
    return decoded.typename === typename && isUuid(decoded.id) ? decoded.id.toLowerCase() : null;
  } catch {
    return null;
  }
}
