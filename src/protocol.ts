/**
 * The hooky.v1 wire contract, in one place: names, id and token patterns, every WebSocket frame
 * both ways and every REST body as a valibot schema with its type inferred, the one builder of a
 * `new-request` frame, and which refusals are permanent. The server, the SDK, the CLI, the
 * benchmarks and the generated API docs (src/apidocs.ts) all read it from here.
 * Imports nothing from the server, so the SDK bundles for the browser on its own.
 */
import * as v from 'valibot';

export const PROTOCOL = 'hooky.v1';
/**
 * Browsers cannot set headers on a WebSocket, so a client that must send the API token offers it
 * as a second subprotocol, `hooky.token.<token>`, beside `hooky.v1`. The server never selects it.
 */
export const TOKEN_PROTOCOL_PREFIX = 'hooky.token.';

/**
 * What HOOKY_API_TOKEN may hold (the server also bounds its length): characters valid both in a
 * header and in a subprotocol name, so either transport carries the token unchanged.
 */
export const tokenPattern = /^[A-Za-z0-9._~+-]+$/;

/**
 * Upgrades refused for a reason no retry can fix: a missing or wrong token (401), a foreign
 * origin (403), no hooky.v1 offered (400), a WebSocket version other than 13 (426). Every other
 * refusal is worth retrying with backoff: 503 while the server drains or is full, and whatever a
 * proxy answers while the server behind it is being deployed (404, 502, …). The SDK stops on
 * these, and so does the CLI.
 */
const permanentRefusals: ReadonlySet<number> = new Set([400, 401, 403, 426]);
export const isPermanentRefusal = (status: number): boolean => permanentRefusals.has(status);

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

/** A client's `ref`, echoed on the replies to its frame: a short string or a finite number. */
export const RefSchema = v.optional(v.union([v.pipe(v.string(), v.maxLength(128)), v.pipe(v.number(), v.finite())]));
export type Ref = v.InferOutput<typeof RefSchema>;

/** The frame every message shares; checked first so an unknown event is told apart from a bad one. */
export const EnvelopeSchema = v.object({ event: v.string() });

/** One frame of the protocol: `{"event", "data", "ref"?}`. */
const frame = <E extends string, D extends v.GenericSchema>(event: E, data: D) => v.object({ event: v.literal(event), data, ref: RefSchema });

export const clientSchemas = {
  join: frame('join', v.object({ webhookId: WebhookIdSchema, since: v.optional(RequestIdSchema) })),
  leave: frame('leave', v.object({ webhookId: WebhookIdSchema })),
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
  OVERLOADED: 'The server is sending as many stored requests as it may at once; join again with since = last after retryAfterMs',
  INTERNAL: 'Internal server error',
} as const;
export type WsErrorCode = keyof typeof wsErrorMessages;

/**
 * Error codes a retry of the same `join` can outlive: the room is kept and joined again after a
 * backoff. Every other code is final for that join.
 */
export const transientWsErrors: ReadonlySet<string> = new Set<WsErrorCode>(['RATE_LIMITED', 'INTERNAL', 'OVERLOADED']);

const RoomSchema = v.object({ webhookId: v.string(), room: v.string() });

/**
 * The `data` of every server frame. Readers accept what a later server may add: ids and codes
 * are plain strings here (the server's are described by the patterns and tables above), and an
 * `error` keeps fields it does not name.
 */
export const serverData = {
  /** Always the first frame of a connection. */
  connected: v.object({ connectionId: v.string(), protocol: v.string() }),
  /**
   * `last` (joins without `since`): the newest request committed for the webhook when the join
   * took effect, or null if it has none. Everything after it reaches this connection live, so it
   * is a safe `since` for a later resume even before the first event arrives.
   */
  joined: v.object({ webhookId: v.string(), room: v.string(), last: v.exactOptional(v.nullable(v.string())) }),
  /** Ends the replay of a `join` with `since`; `last` is where a follow-up join should resume. */
  replayed: v.object({ webhookId: v.string(), room: v.string(), count: v.number(), truncated: v.boolean(), last: v.string() }),
  left: RoomSchema,
  /** The captured request; replayed ones carry the join's `ref`, live ones none. */
  'new-request': CapturedRequestSchema,
  /** `code` is one of `wsErrorMessages`' keys; some carry more (`webhookId`, `reason`, `retryAfterMs`, …). */
  error: v.looseObject({ code: v.string(), message: v.string(), webhookId: v.optional(v.string()) }),
  /** Sent before the server closes the connection. */
  disconnect: v.object({ reason: v.string() }),
  pong: v.object({}),
} as const;

export type ServerEventName = keyof typeof serverData;
export type ServerEvents = { [K in ServerEventName]: v.InferOutput<(typeof serverData)[K]> };

/** Every server frame, whole: `{event, data, ref?}`. */
export const serverSchemas = Object.fromEntries(Object.entries(serverData).map(([event, data]) => [event, frame(event, data)])) as {
  [K in ServerEventName]: ReturnType<typeof frame<K, (typeof serverData)[K]>>;
};
export type ServerFrame = { [K in ServerEventName]: v.InferOutput<(typeof serverSchemas)[K]> }[ServerEventName];

/**
 * The `new-request` frame of a stored payload. The payload is the JSON text serialised once at
 * capture; it goes into the frame as it is, never parsed again.
 */
export function newRequestFrame(payloadJson: string, ref?: Ref): string {
  return ref === undefined ? `{"event":"new-request","data":${payloadJson}}` : `{"event":"new-request","data":${payloadJson},"ref":${JSON.stringify(ref)}}`;
}

// --- REST ------------------------------------------------------------------------------------

// uWS writes these itself; a webhook that set them would corrupt the HTTP framing.
const reservedHeaders = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'date']);

/** The statuses that never carry a body (RFC 9110 §15.3.5, §15.3.6, §15.4.5). */
export const bodylessStatuses: ReadonlySet<number> = new Set([204, 205, 304]);

/**
 * Put first in the pipe of an object or record schema that an empty object satisfies: valibot's
 * take an array for an object (`[]` would pass as `{}`), and their output no longer shows it.
 */
const notArray = v.custom<unknown>((x) => !Array.isArray(x), 'Invalid type: Expected Object but received Array');

/** Keys valibot's record drops (see WebhookResponseSchema's headers). */
const prototypeKeys = new Set(['__proto__', 'constructor', 'prototype']);

/** The custom answer a webhook's capture route gives instead of the default 200. */
export const WebhookResponseSchema = v.pipe(
  notArray,
  v.strictObject({
  status: v.optional(v.pipe(v.number(), v.integer(), v.minValue(200), v.maxValue(599))),
  headers: v.optional(
    v.pipe(
      notArray,
      // valibot's record leaves these keys out without a word (they could reach an object's
      // prototype): refused, rather than a header the webhook's owner set and never sees sent.
      v.check(
        (h) => typeof h !== 'object' || h === null || !Object.keys(h).some((k) => prototypeKeys.has(k)),
        'header names __proto__, constructor and prototype are not supported',
      ),
      v.record(
        v.pipe(v.string(), v.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'header names must be RFC 9110 tokens')),
        v.pipe(v.string(), v.maxLength(8192), v.regex(/^[\t\x20-\x7e\x80-\xff]*$/, 'header values must hold no control characters')),
      ),
      // Header names are case-insensitive; stored lower-case like captured headers, so two that
      // differ only in case would be one, with one of the two values.
      v.check((h) => new Set(Object.keys(h).map((k) => k.toLowerCase())).size === Object.keys(h).length, 'header names must differ by more than case'),
      v.transform((h) => Object.fromEntries(Object.entries(h).map(([k, val]) => [k.toLowerCase(), val]))),
      v.check((h) => !Object.keys(h).some((k) => reservedHeaders.has(k)), `headers may not set ${[...reservedHeaders].join(', ')}`),
    ),
  ),
  body: v.optional(v.pipe(v.string(), v.maxLength(1024 * 1024))),
  delayMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(30_000))),
  }),
  v.check((r) => !(r.status !== undefined && bodylessStatuses.has(r.status) && r.body), 'a response with status 204, 205 or 304 cannot have a body'),
);
export type WebhookResponse = v.InferOutput<typeof WebhookResponseSchema>;

/** `POST /api/webhooks`: the body is optional; without `id` the server generates one. */
export const CreateWebhookSchema = v.pipe(
  notArray,
  v.strictObject({
    id: v.optional(WebhookIdSchema),
    // null: the default answer, as GET shows a webhook without a custom one.
    response: v.optional(v.nullable(WebhookResponseSchema)),
  }),
);

/** A webhook as the REST API answers it. */
export const WebhookSchema = v.object({
  id: v.string(),
  /** Its capture URL: the server's public base, then `/h/<id>`. */
  url: v.string(),
  createdAt: v.string(),
  response: v.nullable(WebhookResponseSchema),
});

/** `GET /api/webhooks/:id/requests`: newest first; `next` is the `before` of the next page, or null. */
export const RequestPageSchema = v.object({
  requests: v.array(CapturedRequestSchema),
  next: v.nullable(v.string()),
});

/** `GET /api/webhooks`: newest first, each with how many requests it holds (counted up to 10,000). */
export const WebhookListSchema = v.object({
  webhooks: v.array(v.object({ ...WebhookSchema.entries, requestCount: v.number(), requestCountCapped: v.boolean() })),
  /** The `before` of the next page (an opaque cursor), or null. */
  next: v.nullable(v.string()),
});

/** `POST /api/webhooks/:id/requests/:requestId/resend`: where to send the stored request. */
export const ResendBodySchema = v.object({ url: v.string() });

/** What the resend target answered: status, headers, a bounded excerpt of its body, the time taken. */
export const ResendResultSchema = v.object({
  url: v.string(),
  status: v.number(),
  statusText: v.string(),
  headers: v.record(v.string(), v.string()),
  /** At most 64 KiB of the answer's body; null when it had none. */
  body: v.nullable(v.string()),
  bodyEncoding: v.picklist(['utf8', 'base64']),
  size: v.number(),
  truncated: v.boolean(),
  durationMs: v.number(),
});

/** The default answer of a capture. */
export const CaptureAckSchema = v.object({ ok: v.literal(true), id: v.string() });

/** Every HTTP error: a stable `error` code, a message for people, and for some codes more fields. */
export const ErrorBodySchema = v.looseObject({ error: v.string(), message: v.string() });

/** `/healthz` and `/readyz`; a 503 from `/readyz` is also an error body (`error`, `message`). */
export const HealthSchema = v.object({
  status: v.picklist(['ok', 'ready', 'draining', 'storage_unavailable']),
  error: v.optional(v.picklist(['draining', 'storage_unavailable'])),
  message: v.optional(v.string()),
});
