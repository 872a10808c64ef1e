import { isUnreachable } from './db/failure.js';
import type { Logger } from './log.js';

// RFC 9110 §11.6.1: a 401 names the scheme the client should use.
const bearer = { 'www-authenticate': 'Bearer realm="hooky"' } as const;
// 503s tell well-behaved senders (Stripe, GitHub, autocannon users' retry loops) when to come back.
const retry = { 'retry-after': '1' } as const;

/**
 * The stable error codes of the wire contract: status, message and the headers each answer
 * carries. HTTP errors answer `{"error": code, "message": message}`; WebSocket errors are `error`
 * events with `{"code", "message"}` (their table is protocol.ts's `wsErrorMessages`, shared with
 * the SDK). Clients match on the code, never on the message.
 */
export const httpErrors = {
  invalid_request: { status: 400, message: 'The request is not valid' },
  unsupported_protocol: { status: 400, message: 'The WebSocket must offer subprotocol hooky.v1' },
  unauthorized: { status: 401, message: 'A valid API token is required: send Authorization: Bearer <token>', headers: bearer },
  forbidden_origin: { status: 403, message: 'This Origin may not open a WebSocket to this server' },
  resend_disabled: { status: 403, message: 'Resend is off: HOOKY_RESEND_ALLOW lists no target origin' },
  forbidden_target: { status: 403, message: 'The target origin is not one HOOKY_RESEND_ALLOW lists' },
  not_found: { status: 404, message: 'Not found' },
  method_not_allowed: { status: 405, message: 'Method not allowed on this route' },
  // RFC 6455 §4.4: name the WebSocket version the server speaks.
  upgrade_required: {
    status: 426,
    message: 'This route speaks WebSocket: connect with a WebSocket client offering subprotocol hooky.v1',
    headers: { 'sec-websocket-version': '13' },
  },
  conflict: { status: 409, message: 'A webhook with this id already exists' },
  too_many_webhooks: { status: 409, message: 'The server holds as many webhooks as it may (HOOKY_MAX_WEBHOOKS); delete one first' },
  payload_too_large: { status: 413, message: 'The request body is larger than the limit' },
  too_many_headers: { status: 431, message: 'The request has more header fields than the limit' },
  headers_too_large: { status: 431, message: 'The request headers are larger than the limit' },
  internal: { status: 500, message: 'Internal server error' },
  target_unreachable: { status: 502, message: 'The resend target could not be reached or broke off its answer' },
  target_timeout: { status: 504, message: 'The resend target did not answer in time' },
  storage_unavailable: { status: 503, message: 'Storage is unavailable; retry later', headers: retry },
  draining: { status: 503, message: 'The server is shutting down; retry later', headers: retry },
  overloaded: { status: 503, message: 'Too many requests are waiting to be stored; retry later', headers: retry },
  too_many_connections: { status: 503, message: 'The server has as many WebSocket connections as it may hold; retry later', headers: retry },
} as const satisfies Record<string, ErrorEntry>;

interface ErrorEntry {
  readonly status: number;
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export type HttpErrorCode = keyof typeof httpErrors;

export { wsErrorMessages as wsErrors, type WsErrorCode } from './protocol.js';

/** An error that carries the HTTP answer it should produce, in the manner of `err.status = 413`. */
export class HttpError extends Error {
  readonly status: number;
  /** The table's headers for the code, then `headers` given here (a 405's `allow`). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(
    readonly code: HttpErrorCode,
    message: string = httpErrors[code].message,
    readonly extra?: Record<string, unknown>,
    headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
    this.name = 'HttpError';
    this.status = httpErrors[code].status;
    const fixed = (httpErrors[code] as ErrorEntry).headers;
    this.headers = headers === undefined ? (fixed ?? noHeaders) : { ...fixed, ...headers };
  }
}

const noHeaders: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The one translation of a failure into an HTTP answer: an HttpError is the client's answer as it
 * is; anything else is a bug or broken infrastructure, logged once here and answered 503
 * `storage_unavailable` when Postgres cannot be reached (db/failure.ts), else 500 `internal`.
 */
export function httpErrorOf(err: unknown, log: Logger, what: string, fields?: Record<string, unknown>): HttpError {
  if (err instanceof HttpError) return err;
  const unreachable = isUnreachable(err);
  log.error(unreachable ? `${what}: storage unavailable` : `${what} failed`, { ...fields, err });
  return new HttpError(unreachable ? 'storage_unavailable' : 'internal');
}
