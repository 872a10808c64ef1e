import { createHash, timingSafeEqual } from 'node:crypto';
import { TOKEN_PROTOCOL_PREFIX } from './protocol.js';

export interface AuthOptions {
  apiToken: string | undefined;
  /** Lower-case origins; undefined allows any. */
  allowedOrigins: readonly string[] | undefined;
}

// Bearer scheme per RFC 6750 §2.1; the scheme name is case-insensitive (RFC 9110 §11.1).
const bearer = /^bearer[ \t]+([^\s,]+)[ \t]*$/i;

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Who may use the REST API and /ws: the optional API token and the browser origins allowed to
 * open a WebSocket. Options are resolved once; each check is a few string operations.
 */
export function createAuth(opts: AuthOptions) {
  // Both sides are hashed first so the comparison takes the same time whatever the length or
  // content of the guess: timingSafeEqual alone would leak the token's length.
  const expected = opts.apiToken === undefined ? undefined : digest(opts.apiToken);
  const matches = (given: string) => expected !== undefined && timingSafeEqual(digest(given), expected);
  const origins = opts.allowedOrigins === undefined ? undefined : new Set(opts.allowedOrigins);

  const fromHeader = (authorization: string) => {
    const m = bearer.exec(authorization);
    return m !== null && matches(m[1]!);
  };

  return {
    /** True when a token is configured. */
    required: expected !== undefined,

    /** REST: no token configured, or `Authorization: Bearer <token>` carries it. */
    allowsRequest(authorization: string): boolean {
      return expected === undefined || fromHeader(authorization);
    },

    /** /ws: the Authorization header (Node clients), or a `hooky.token.<token>` subprotocol (browsers). */
    allowsUpgrade(authorization: string, protocols: readonly string[]): boolean {
      if (expected === undefined || (authorization !== '' && fromHeader(authorization))) return true;
      return protocols.some((p) => p.startsWith(TOKEN_PROTOCOL_PREFIX) && matches(p.slice(TOKEN_PROTOCOL_PREFIX.length)));
    },

    /**
     * Browsers send Origin on every WebSocket handshake and scripts cannot forge it, so checking it
     * stops a page on another site from opening /ws with the visitor's network position
     * (cross-site WebSocket hijacking). A request without Origin is not from a browser: allowed.
     */
    allowsOrigin(origin: string): boolean {
      return origins === undefined || origin === '' || origins.has(origin.toLowerCase());
    },
  };
}

export type Auth = ReturnType<typeof createAuth>;
