type DriverError = { code?: unknown; constraint?: unknown; constraint_name?: unknown; cause?: unknown };

/** The driver error under drizzle's wrapper (postgres.js and PGlite name their fields differently). */
function driverErrors(error: unknown): DriverError[] {
  const chain: DriverError[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth += 1) {
    chain.push(current as DriverError);
    current = (current as DriverError).cause;
  }
  return chain;
}

/** The name of the unique constraint an insert or update violated, or null for any other error. */
export function uniqueViolation(error: unknown): string | null {
  for (const candidate of driverErrors(error)) {
    if (candidate.code === '23505') {
      const name = candidate.constraint_name ?? candidate.constraint;
      return typeof name === 'string' ? name : '';
    }
  }
  return null;
}

/** True when the error means the database could not be reached (down, restarting, refused). */
export function isConnectionError(error: unknown): boolean {
  return driverErrors(error).some((candidate) => {
    const code = candidate.code;
    return (
      code === 'ECONNREFUSED' ||
      code === 'ECONNRESET' ||
      code === 'CONNECTION_CLOSED' ||
      code === 'CONNECTION_ENDED' ||
      code === 'CONNECTION_DESTROYED' ||
      code === 'CONNECT_TIMEOUT' ||
      code === '57P01' || // admin_shutdown
      code === '57P03' // cannot_connect_now
    );
  });
}
