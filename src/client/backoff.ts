export interface BackoffOptions {
  /** Base of the first reconnect wait, in ms. */
  minDelayMs: number;
  /** Ceiling of every wait, in ms. */
  maxDelayMs: number;
  /** Growth of the base per attempt. */
  factor: number;
  /** Fraction of each wait that is random, 0–1. */
  jitter: number;
}

/**
 * The wait before reconnect attempt `attempt` (1, 2, …): base = min(max, min × factor^(attempt−1)),
 * of which a `jitter` fraction is drawn afresh on every call.
 *
 * The fresh draw is the point. reconnecting-websocket draws its random minimum once per module
 * load, so every client in one process (and every retry of one client) waits in step; after a
 * server restart they would all knock at once. With factor ≥ 2 and jitter ≤ 0.5 a wait is never
 * shorter than the one before, until the ceiling; there the waits are spread over [max × (1 − jitter), max].
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(o.maxDelayMs, o.minDelayMs * o.factor ** Math.max(0, attempt - 1));
  return Math.round(base * (1 - o.jitter * random()));
}
