import postgres from 'postgres';

/**
 * What a failed query says about the database, in one place: whether Postgres could not be
 * reached (the REST API and captures answer 503 `storage_unavailable` rather than 500), and
 * whether a statement that failed may nevertheless have committed (the writer then asks).
 */

const codeOf = (err: unknown) => (err as { code?: unknown } | null)?.code;

/**
 * Postgres is out of reach: no connection, a connection lost, the server shutting down (57P0x),
 * a connection exception (class 08) or out of resources (class 53: disk full, out of memory, too
 * many connections), or any error that ends the session (severity FATAL or PANIC: among them a
 * database not accepting connections, 55000 at connect).
 */
export function isUnreachable(err: unknown): boolean {
  const code = codeOf(err);
  if (err instanceof postgres.PostgresError && (err.severity === 'FATAL' || err.severity === 'PANIC')) return true;
  return typeof code === 'string' && /^(ECONN|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE|CONNECT_TIMEOUT|CONNECTION_|57P0|08|53)/.test(code);
}

/**
 * A connection pooler in front of Postgres refused a setting hooky sends when it connects
 * (PgBouncer answers "unsupported startup parameter: …" for any it does not track).
 */
export const isRefusedSetting = (err: unknown): boolean => err instanceof Error && err.message.startsWith('unsupported startup parameter');

/** Postgres refused the password (28P01, invalid_password). */
export const isWrongPassword = (err: unknown): boolean => codeOf(err) === '28P01';

// The statement never left: the connection was not made, or was already gone.
const neverSent = new Set(['ECONNREFUSED', 'CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'CONNECTION_ENDED']);

/**
 * False when a statement certainly did not commit: the connection was never made, or Postgres
 * answered with an error (a statement that fails is rolled back). Anything else, a connection
 * that closed or reset while the statement was out, leaves the outcome unknown.
 */
export function mayHaveCommitted(err: unknown): boolean {
  if (err instanceof postgres.PostgresError) return false;
  const code = codeOf(err);
  return !(typeof code === 'string' && neverSent.has(code));
}
