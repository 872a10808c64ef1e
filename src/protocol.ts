/**
 * The hooky.v1 wire protocol: names, schemas and types shared by the server and the client SDK.
 * Imports nothing from the server, so the SDK bundles for the browser on its own.
 */
import * as v from 'valibot';

export const PROTOCOL = 'hooky.v1';
/**
 * Browsers cannot set headers on a WebSocket, so a client that must send the API token offers it
 * as a second subprotocol, `hooky.token.<token>`, beside `hooky.v1`. The server never selects it.
 */
export const TOKEN_PROTOCOL_PREFIX = 'hooky.token.';

export const webhookIdPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** UUIDv7 in lower-case hex: plain string order is capture order. */
export const requestIdPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export const roomOf = (webhookId: string) => `webhook:${webhookId}`;

/**
 * The smallest request id of millisecond `ms` (a valid UUIDv7 with nothing after the time): every
 * request captured at or after `ms` has an id at least this, every earlier one a smaller id. So
 * "captured before X" is `id < requestIdFloor(X)`, and `requestIdFloor(0)` is a `since` that
 * replays everything.
 */
export function requestIdFloor(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8)}-7000-8000-000000000000`;
}

export const WebhookIdSchema = v.pipe(v.string(), v.regex(webhookIdPattern, 'webhookId must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'));
export const RequestIdSchema = v.pipe(v.string(), v.regex(requestIdPattern, 'must be a request id (UUIDv7, lower-case hex)'));

/** The captured-request object of the wire contract; REST and WebSocket send the same JSON. */
export const CapturedRequestSchema = v.object({
  id: v.string(),
  webhookId: v.string(),
  method: v.string(),
  path: v.string(),
  headers: v.record(v.string(), v.string()),
  queryParams: v.record(v.string(), v.union([v.string(), v.array(v.string())])),
  /** The query string as received, without `?`; absent on requests captured before it was kept. */
  rawQuery: v.optional(v.string()),
  body: v.nullable(v.string()),
  bodyEncoding: v.picklist(['utf8', 'base64']),
  size: v.number(),
  timestamp: v.string(),
  sourceIp: v.string(),
  userAgent: v.nullable(v.string()),
});
export type CapturedRequest = v.InferOutput<typeof CapturedRequestSchema>;

const RefSchema = v.optional(v.union([v.pipe(v.string(), v.maxLength(128)), v.pipe(v.number(), v.finite())]));
export type Ref = v.InferOutput<typeof RefSchema>;

/** The frame every message shares; checked first so an unknown event is told apart from a bad one. */
export const EnvelopeSchema = v.object({ event: v.string() });

export const clientSchemas = {
  join: v.object({
    event: v.literal('join'),
    data: v.object({ webhookId: WebhookIdSchema, since: v.optional(RequestIdSchema) }),
    ref: RefSchema,
  }),
  leave: v.object({
    event: v.literal('leave'),
    data: v.object({ webhookId: WebhookIdSchema }),
    ref: RefSchema,
  }),
  /** Application-level heartbeat: browsers cannot see WebSocket pings, so the SDK sends this. */
  ping: v.object({ event: v.literal('ping'), data: v.optional(v.unknown()), ref: RefSchema }),
} as const;

export type ClientEvent = keyof typeof clientSchemas;
export type ClientMessage = { [K in ClientEvent]: v.InferOutput<(typeof clientSchemas)[K]> }[ClientEvent];

export const wsErrorMessages = {
  WEBHOOK_NOT_FOUND: 'Webhook not found',
  BAD_MESSAGE: 'The message is not a valid hooky.v1 frame',
  UNKNOWN_EVENT: 'Unknown event',
  TOO_MANY_ROOMS: 'This connection has joined as many rooms as it may',
  WEBHOOK_DELETED: 'The webhook was deleted',
  RATE_LIMITED: 'Too many messages; slow down',
  INTERNAL: 'Internal server error',
} as const;
export type WsErrorCode = keyof typeof wsErrorMessages;

export interface ServerEvents {
  connected: { connectionId: string; protocol: typeof PROTOCOL };
  /**
   * `last` (joins without `since`): the newest request committed for the webhook when the join
   * took effect, or null if it has none. Everything after it reaches this connection live, so it
   * is a safe `since` for a later resume even before the first event arrives.
   */
  joined: { webhookId: string; room: string; last?: string | null };
  /** Ends the replay of a `join` with `since`; `last` is where a follow-up join should resume. */
  replayed: { webhookId: string; room: string; count: number; truncated: boolean; last: string };
  left: { webhookId: string; room: string };
  'new-request': CapturedRequest;
  error: { code: WsErrorCode; message: string; [extra: string]: unknown };
  disconnect: { reason: string };
  pong: Record<string, never>;
}
export type ServerEventName = keyof ServerEvents;
export type ServerFrame = { [K in ServerEventName]: { event: K; data: ServerEvents[K]; ref?: Ref } }[ServerEventName];
