/**
 * The stable error codes of the wire contract. HTTP errors answer
 * `{"error": code, "message": message}`; WebSocket errors are `error` events with
 * `{"code", "message"}`. Clients match on the code, never on the message.
 */
export const httpErrors = {
  invalid_request: { status: 400, message: 'The request is not valid' },
  unsupported_protocol: { status: 400, message: 'The WebSocket must offer subprotocol hooky.v1' },
  unauthorized: { status: 401, message: 'A valid API token is required: send Authorization: Bearer <token>' },
  forbidden_origin: { status: 403, message: 'This Origin may not open a WebSocket to this server' },
  resend_disabled: { status: 403, message: 'Resend is off: HOOKY_RESEND_ALLOW lists no target origin' },
  forbidden_target: { status: 403, message: 'The target origin is not one HOOKY_RESEND_ALLOW lists' },
  not_found: { status: 404, message: 'Not found' },
  method_not_allowed: { status: 405, message: 'Method not allowed on this route' },
  upgrade_required: { status: 426, message: 'This route speaks WebSocket: connect with a WebSocket client offering subprotocol hooky.v1' },
  conflict: { status: 409, message: 'A webhook with this id already exists' },
  too_many_webhooks: { status: 409, message: 'The server holds as many webhooks as it may (HOOKY_MAX_WEBHOOKS); delete one first' },
  payload_too_large: { status: 413, message: 'The request body is larger than the limit' },
  too_many_headers: { status: 431, message: 'The request has more header fields than the limit' },
  headers_too_large: { status: 431, message: 'The request headers are larger than the limit' },
  internal: { status: 500, message: 'Internal server error' },
  target_unreachable: { status: 502, message: 'The resend target could not be reached or broke off its answer' },
  target_timeout: { status: 504, message: 'The resend target did not answer in time' },
  storage_unavailable: { status: 503, message: 'Storage is unavailable; retry later' },
  draining: { status: 503, message: 'The server is shutting down; retry later' },
  overloaded: { status: 503, message: 'Too many requests are waiting to be stored; retry later' },
  too_many_connections: { status: 503, message: 'The server has as many WebSocket connections as it may hold; retry later' },
} as const;

export type HttpErrorCode = keyof typeof httpErrors;

export { wsErrorMessages as wsErrors, type WsErrorCode } from './protocol.js';

/** An error that carries the HTTP answer it should produce, in the manner of `err.status = 413`. */
export class HttpError extends Error {
  readonly status: number;
  constructor(
    readonly code: HttpErrorCode,
    message: string = httpErrors[code].message,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'HttpError';
    this.status = httpErrors[code].status;
  }
}
