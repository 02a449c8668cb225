/**
 * A copy of `value` that PostgreSQL can store: text and jsonb take no NUL, and jsonb refuses lone
 * surrogates, so both become U+FFFD. For data we do not control (upstream payloads and messages);
 * client input with such characters is refused instead, so that it is never silently altered.
 */
export function storable<T>(value: T): T {
  if (typeof value === 'string') return value.toWellFormed().replaceAll('\u0000', '\uFFFD') as T;
  if (Array.isArray(value)) return value.map((item) => storable(item)) as T;
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [storable(key), storable(item)])) as T;
  }
  return value;
}

/**
 * Whether a client's string can be stored and returned verbatim: PostgreSQL stores no NUL in text
 * or jsonb, and jsonb refuses lone surrogates. Client input is refused at the boundary instead of
 * failing (or being altered) at the insert.
 */
export function isStorableText(value: string): boolean {
  return value.isWellFormed() && !value.includes('\u0000');
}

export const STORABLE_TEXT_MESSAGE = 'must be valid Unicode text without NUL (U+0000) characters';
