/**
 * The `/ws` upgrade: the checks a handshake passes, in their documented order, each refusal
 * answered through http.ts with the error table's code, status and headers; and the answer to a
 * plain GET /ws.
 */
import type { Auth } from './auth.js';
import { HttpError } from './errors.js';
import { sendError } from './http.js';
import type { Metrics } from './metrics.js';
import { PROTOCOL, TOKEN_PROTOCOL_PREFIX } from './protocol.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from './uws.js';

export interface UpgradeOptions {
  /** Open WebSocket connections at most (HOOKY_MAX_CONNECTIONS). */
  maxConnections: number;
}

interface Deps<T> {
  auth: Pick<Auth, 'allowsOrigin' | 'allowsUpgrade'>;
  metrics: Pick<Metrics, 'rejectedUpgrades'>;
  isDraining: () => boolean;
  /** Open connections now. */
  connections: () => number;
  /** The user data of a connection being accepted. */
  accept: () => T;
}

// Upgrade refusals, built once; their headers (Retry-After, WWW-Authenticate,
// Sec-WebSocket-Version) come from the one table in errors.ts.
const unsupportedProtocol = new HttpError('unsupported_protocol', `The WebSocket must offer subprotocol ${PROTOCOL} in Sec-WebSocket-Protocol`, {
  supported: [PROTOCOL],
});
const draining = new HttpError('draining');
const unauthorized = new HttpError(
  'unauthorized',
  `A valid API token is required: send Authorization: Bearer <token>, or from a browser the subprotocol ${TOKEN_PROTOCOL_PREFIX}<token> beside ${PROTOCOL}`,
);
const forbiddenOrigin = new HttpError('forbidden_origin');
const tooManyConnections = new HttpError('too_many_connections');
const badVersion = new HttpError('upgrade_required', 'Only WebSocket version 13 (RFC 6455) is spoken here', { protocols: [PROTOCOL] });
const notUpgraded = new HttpError('upgrade_required', undefined, { protocols: [PROTOCOL] });

/**
 * uWS's `upgrade` handler. Checked in this order, cheapest refusal of the least trusted first:
 * draining (503), a WebSocket version other than 13 (426), a foreign browser origin (403), a
 * missing or wrong token (401), then the protocol (400) and the connection limit (503). An
 * unauthenticated client learns nothing but 401. (uWS itself routes a bad Sec-WebSocket-Key as
 * a plain GET.)
 */
export function createUpgrade<T>(opts: UpgradeOptions, deps: Deps<T>) {
  const { auth, metrics } = deps;
  return (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    // RFC 6455 §11.3.4: the header may be sent on several lines, one list (getHeader reads the first).
    let offered = '';
    req.forEach((name, value) => {
      if (name === 'sec-websocket-protocol') offered = offered === '' ? value : `${offered},${value}`;
    });
    const key = req.getHeader('sec-websocket-key');
    const extensions = req.getHeader('sec-websocket-extensions');
    const origin = req.getHeader('origin');
    const authorization = req.getHeader('authorization');
    const version = req.getHeader('sec-websocket-version');
    const protocols = offered.split(',').map((p) => p.trim());
    const refuse = (err: HttpError) => {
      metrics.rejectedUpgrades.inc(err.status);
      sendError({ res, done: false }, err);
    };
    if (deps.isDraining()) return refuse(draining);
    if (version !== '13') return refuse(badVersion);
    if (!auth.allowsOrigin(origin)) return refuse(forbiddenOrigin);
    if (!auth.allowsUpgrade(authorization, protocols)) return refuse(unauthorized);
    if (!protocols.includes(PROTOCOL)) return refuse(unsupportedProtocol);
    // `open` runs inside res.upgrade, synchronously, so `connections()` already counts every upgrade.
    if (deps.connections() >= opts.maxConnections) return refuse(tooManyConnections);
    res.upgrade<T>(deps.accept(), key, PROTOCOL, extensions, context);
  };
}

/** A plain GET (no Upgrade header) never reaches the ws route: it is told what /ws is. */
export function answerPlainGet(res: HttpResponse): void {
  sendError({ res, done: false }, notUpgraded);
}
