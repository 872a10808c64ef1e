/**
 * `p`, or a rejection once `ms` have passed; the timer is cleared either way. For a wait that must
 * end: a readiness probe, and a question to Postgres that postgres.js would otherwise hold until
 * it can connect, however long Postgres refuses connections.
 */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(ms)} ms`)), Math.max(0, ms));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
