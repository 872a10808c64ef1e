/**
 * The WebSocket message rate limit: a token bucket per connection and the strike window that
 * closes a client which keeps going. Pure: time comes in as `now`, nothing is sent from here.
 */

export interface RateOptions {
  /** Frames per second per connection; 0 = no limit. */
  rateLimit: number;
  /** Frames a connection may send at once. */
  rateBurst: number;
}

/** One connection's bucket; its session (session.ts) is one. */
export interface Bucket {
  /** Frames the connection may still send now, refilled over time. */
  tokens: number;
  /** When `tokens` was last refilled, in ms. */
  filledAt: number;
  /** Frames refused since `refusedSince`; past the burst within the strike window, the connection is closed. */
  refused: number;
  refusedSince: number;
}

/**
 * What a frame gets: read (`pass`), answered RATE_LIMITED without being read (`refuse`), or the
 * connection closed with 1008 (`close`).
 */
export type Verdict = 'pass' | 'refuse' | 'close';

/** A client over its rate for this long, by more than a burst, is closed rather than answered. */
export const strikeWindowMs = 10_000;

/**
 * Token bucket: `rateBurst` frames at once, refilled at `rateLimit` per second. A client that
 * keeps going, more than a burst refused within the strike window, is to be closed.
 */
export function createRateLimit(opts: RateOptions) {
  return {
    /** A full bucket for a connection opened at `now`. */
    bucket(now: number): Bucket {
      return { tokens: opts.rateBurst, filledAt: now, refused: 0, refusedSince: now };
    },

    /** Takes a token for one frame arriving at `now`. */
    take(b: Bucket, now: number): Verdict {
      if (opts.rateLimit === 0) return 'pass';
      b.tokens = Math.min(opts.rateBurst, b.tokens + ((now - b.filledAt) * opts.rateLimit) / 1000);
      b.filledAt = now;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return 'pass';
      }
      if (now - b.refusedSince > strikeWindowMs) {
        b.refusedSince = now;
        b.refused = 0;
      }
      return ++b.refused > opts.rateBurst ? 'close' : 'refuse';
    },

    /** After a refusal: how long until the bucket holds a token again, in ms (RATE_LIMITED's retryAfterMs). */
    retryAfterMs(b: Bucket): number {
      return Math.ceil(((1 - b.tokens) * 1000) / opts.rateLimit);
    },
  };
}

export type RateLimit = ReturnType<typeof createRateLimit>;
