import { randomUUID } from 'node:crypto';
import * as v from 'valibot';
import type { Auth } from './auth.js';
import type { Budget } from './budget.js';
import { HttpError } from './errors.js';
import { errorBody, send as sendHttp, sendError as sendHttpError, type Headers } from './http.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import {
  clientSchemas,
  EnvelopeSchema,
  newRequestFrame,
  PROTOCOL,
  RefSchema,
  roomOf,
  TOKEN_PROTOCOL_PREFIX,
  wsErrorMessages,
  type ClientEvent,
  type Ref,
  type ServerEventName,
  type ServerEvents,
  type WsErrorCode,
} from './protocol.js';
import type { Relay } from './relay.js';
import type { PendingRow, Store } from './store.js';
import { uws, type TemplatedApp, type WebSocket } from './uws.js';
import type { WebhookCache } from './webhooks.js';

/** What the server keeps per connection; dropped with the connection. */
interface Conn {
  readonly id: string;
  readonly rooms: Set<string>;
  closed: boolean;
  /** Rate limit: frames the connection may still send now, refilled over time (a token bucket). */
  tokens: number;
  /** When `tokens` was last refilled, in ms. */
  filledAt: number;
  /** Frames refused since `refusedSince`; past the burst within the strike window, the connection is closed. */
  refused: number;
  refusedSince: number;
  /** Its send buffer is, or is about to be, past the limit: uWS drops a frame and closes it (see `close`). */
  overLimit: boolean;
  /** Bytes published to its rooms by the batch being checked. */
  pending: number;
  /** The replays of its joins with `since`, one after the other: each ends before the next starts. */
  replays: Promise<void>;
  /** A replay waiting for the send buffer to drain (see `drained`). */
  onDrain: (() => void) | undefined;
}

export interface RealtimeOptions {
  maxWsPayload: number;
  wsMaxBuffer: number;
  wsIdleTimeout: number;
  maxRooms: number;
  replayLimit: number;
  /** Payload bytes per replay page; a page holds at least one request. */
  maxPageBytes: number;
  maxConnections: number;
  /** Frames per second per connection; 0 = no limit. */
  wsRateLimit: number;
  wsRateBurst: number;
}

interface Deps {
  auth: Auth;
  store: Store;
  /** Which rooms this instance serves: told when a room gets its first member and loses its last. */
  relay: Pick<Relay, 'watch' | 'unwatch'>;
  webhooks: WebhookCache;
  metrics: Metrics;
  log: Logger;
  /** Payload bytes held for listings and replays, server-wide (HOOKY_MAX_READ_BYTES). */
  reads: Budget;
  isDraining: () => boolean;
}

type Socket = WebSocket<Conn>;

const unsupportedProtocol = errorBody('unsupported_protocol', `The WebSocket must offer subprotocol ${PROTOCOL} in Sec-WebSocket-Protocol`, {
  supported: [PROTOCOL],
});
const drainingBody = errorBody('draining');
const unauthorizedBody = errorBody(
  'unauthorized',
  `A valid API token is required: send Authorization: Bearer <token>, or from a browser the subprotocol ${TOKEN_PROTOCOL_PREFIX}<token> beside ${PROTOCOL}`,
);
const forbiddenOriginBody = errorBody('forbidden_origin');
const tooManyConnectionsBody = errorBody('too_many_connections');
const badVersionBody = errorBody('upgrade_required', 'Only WebSocket version 13 (RFC 6455) is spoken here', { protocols: [PROTOCOL] });
const json: Headers = { 'content-type': 'application/json' };
const refusalHeaders: Readonly<Record<number, Headers>> = {
  401: { ...json, 'www-authenticate': 'Bearer realm="hooky"' },
  // RFC 6455 §4.4: name the version the server speaks.
  426: { ...json, 'sec-websocket-version': '13' },
  503: { ...json, 'retry-after': '1' },
};

/**
 * A replay sends its next page once the socket's send buffer is down to this: the page before it
 * has then reached the kernel, and its hold on the read budget is given back.
 */
const replayLowWater = 256 * 1024;
/** What an OVERLOADED refusal of a replay suggests waiting before the join is sent again. */
const overloadedRetryMs = 1000;

/** A client over its rate for this long, by more than a burst, is closed rather than answered. */
const strikeWindowMs = 10_000;

/**
 * `/ws`: the hooky.v1 protocol over uWS. A room is the uWS topic `webhook:<id>`, so a
 * broadcast is one `app.publish` that uWS fans out in C++, never a loop over sockets in JS.
 */
export function createRealtime(app: TemplatedApp, opts: RealtimeOptions, deps: Deps) {
  const { store, webhooks, metrics, log, auth, reads } = deps;
  // Every open socket, for shutdown.
  const sockets = new Set<Socket>();
  // The members of each room, kept beside uWS's topics: for emptying a deleted webhook's room and
  // for checking the send buffers of the sockets a publish just reached.
  const members = new Map<string, Set<Socket>>();

  /** uWS answers 2 when it dropped the frame for backpressure, and then closes the socket itself. */
  function sent(ws: Socket, status: number) {
    if (status === 2) ws.getUserData().overLimit = true;
  }

  /**
   * Flags the members of the rooms a batch reached whose send buffer, with the bytes just
   * published to them, passes the limit. uWS queues publishes under 16 KiB and writes them after
   * this returns, at the end of the loop iteration; a frame it then drops closes the socket before
   * any JavaScript runs again, so the buffer cannot be read afterwards: it is predicted here.
   * A flagged socket that is still open on the next turn was not dropped after all (its reader
   * kept up, or the kernel took the bytes): the flag is cleared then.
   */
  function checkBuffers(reached: Map<Set<Socket>, number>) {
    for (const [set, bytes] of reached) for (const ws of set) ws.getUserData().pending += bytes;
    let flagged: Socket[] | undefined;
    for (const set of reached.keys()) {
      for (const ws of set) {
        const conn = ws.getUserData();
        if (conn.pending === 0) continue; // already checked through another room
        if (ws.getBufferedAmount() + conn.pending > opts.wsMaxBuffer && !conn.overLimit) {
          conn.overLimit = true;
          (flagged ??= []).push(ws);
        }
        conn.pending = 0;
      }
    }
    if (flagged !== undefined) setImmediate(clearSurvivors, flagged);
  }

  function clearSurvivors(flagged: Socket[]) {
    for (const ws of flagged) {
      const conn = ws.getUserData();
      if (!conn.closed && ws.getBufferedAmount() <= opts.wsMaxBuffer) conn.overLimit = false;
    }
  }

  function send<E extends ServerEventName>(ws: Socket, event: E, data: ServerEvents[E], ref?: Ref): void {
    if (ws.getUserData().closed) return;
    sent(ws, ws.send(JSON.stringify(ref === undefined ? { event, data } : { event, data, ref }), false));
  }

  function sendError(ws: Socket, code: WsErrorCode, ref: Ref, extra?: Record<string, unknown>, message: string = wsErrorMessages[code]) {
    metrics.wsErrors.inc(code);
    send(ws, 'error', { code, message, ...extra }, ref);
  }

  function leaveRoom(ws: Socket, room: string) {
    const conn = ws.getUserData();
    if (!conn.rooms.delete(room)) return;
    ws.unsubscribe(room);
    forget(ws, room);
    metrics.joinedRooms.dec();
  }

  function forget(ws: Socket, room: string) {
    const set = members.get(room);
    if (set === undefined) return;
    set.delete(ws);
    if (set.size === 0) {
      members.delete(room);
      deps.relay.unwatch(room.slice(roomPrefix.length));
    }
  }

  async function join(ws: Socket, webhookId: string, since: string | undefined, ref: Ref) {
    const conn = ws.getUserData();
    const room = roomOf(webhookId);
    if (!conn.rooms.has(room)) {
      if (conn.rooms.size >= opts.maxRooms) {
        return sendError(ws, 'TOO_MANY_ROOMS', ref, { webhookId, maxRooms: opts.maxRooms });
      }
      const found = webhooks.find(webhookId);
      const webhook = found instanceof Promise ? await found : found;
      if (conn.closed) return;
      if (!webhook) return sendError(ws, 'WEBHOOK_NOT_FOUND', ref, { webhookId });
      // Checked again: another join may have completed while we waited.
      if (!conn.rooms.has(room)) {
        if (conn.rooms.size >= opts.maxRooms) {
          return sendError(ws, 'TOO_MANY_ROOMS', ref, { webhookId, maxRooms: opts.maxRooms });
        }
        // Subscribed before the replay query: a request committed meanwhile is either in the
        // query's result or published to us afterwards, possibly both, never neither.
        ws.subscribe(room);
        conn.rooms.add(room);
        let set = members.get(room);
        if (set === undefined) members.set(room, (set = new Set()));
        set.add(ws);
        metrics.joinedRooms.inc();
      }
    }
    // After subscribing: the relay publishes to the room everything committed after `last`, so
    // `last` is a resume point that cannot skip anything, and the replay below, read later,
    // overlaps what is published live rather than leaving a gap.
    const latest = await deps.relay.watch(webhookId).catch((err: unknown) => {
      // Not served here after all: nothing would be published to it.
      leaveRoom(ws, room);
      throw err;
    });
    if (conn.closed) return;
    if (since === undefined) return send(ws, 'joined', { webhookId, room, last: latest }, ref);
    send(ws, 'joined', { webhookId, room }, ref);
    // One replay at a time per connection: ten joins at once replay one after the other.
    const replay = conn.replays.then(() => replayFrom(ws, webhookId, room, since, ref));
    conn.replays = replay.catch(() => {});
    await replay;
  }

  /**
   * Sends what was committed after `since`, oldest first, page by page: a page ends at
   * HOOKY_MAX_PAGE_BYTES of payload (or one request, however large), its bytes are held from the
   * read budget as soon as it is read, and the next page is fetched only once the socket's send
   * buffer has drained to `replayLowWater`. A replay holds about one page, whatever the client's
   * speed. When the budget refuses a page, the replay stops with OVERLOADED and `last`, from where
   * a new `join` resumes.
   */
  async function replayFrom(ws: Socket, webhookId: string, room: string, since: string, ref: Ref) {
    const conn = ws.getUserData();
    // Replayed events echo the join's ref, which tells them apart from live ones. Pages follow
    // commit order (the cursor: batch position, then id), whichever instance committed them.
    let cursor = await store.cursorOf(webhookId, since);
    let last = since;
    let count = 0;
    let more = true;
    while (more && count < opts.replayLimit && !conn.closed) {
      // A page's bytes are known once it is read (cut at HOOKY_MAX_PAGE_BYTES in SQL): held then.
      const page = await store.requestsAfter(webhookId, cursor, opts.replayLimit - count, opts.maxPageBytes);
      more = page.truncated;
      if (conn.closed || page.rows.length === 0) break;
      const hold = reads.hold();
      if (!hold.take(page.rows.reduce((n, r) => n + Buffer.byteLength(r.json), 0))) {
        metrics.readRefusals.inc();
        return sendError(ws, 'OVERLOADED', ref, { webhookId, last, retryAfterMs: overloadedRetryMs });
      }
      try {
        ws.cork(() => {
          for (const row of page.rows) sent(ws, ws.send(newRequestFrame(row.json, ref), false));
        });
        count += page.rows.length;
        const tail = page.rows[page.rows.length - 1]!;
        cursor = { position: tail.position, id: tail.id };
        last = tail.id;
        await drained(ws);
      } finally {
        hold.release();
      }
    }
    if (conn.closed) return;
    send(ws, 'replayed', { webhookId, room, count, truncated: more, last }, ref);
  }

  /** Resolves once the socket's send buffer is down to `replayLowWater`, or it closed. */
  function drained(ws: Socket): Promise<void> {
    const conn = ws.getUserData();
    if (conn.closed || ws.getBufferedAmount() <= replayLowWater) return Promise.resolve();
    return new Promise((resolve) => {
      conn.onDrain = () => {
        conn.onDrain = undefined;
        resolve();
      };
    });
  }

  /**
   * Token bucket: `wsRateBurst` frames at once, refilled at `wsRateLimit` per second. A refused
   * frame is answered RATE_LIMITED without being read (so without its ref); a client that keeps
   * going, more than a burst refused within the strike window, is closed with 1008.
   */
  function withinRate(ws: Socket): boolean {
    const conn = ws.getUserData();
    const now = Date.now();
    conn.tokens = Math.min(opts.wsRateBurst, conn.tokens + ((now - conn.filledAt) * opts.wsRateLimit) / 1000);
    conn.filledAt = now;
    if (conn.tokens >= 1) {
      conn.tokens -= 1;
      return true;
    }
    if (now - conn.refusedSince > strikeWindowMs) {
      conn.refusedSince = now;
      conn.refused = 0;
    }
    if (++conn.refused > opts.wsRateBurst) {
      metrics.rateLimitCloses.inc();
      ws.end(1008, 'rate limit exceeded');
      return false;
    }
    sendError(ws, 'RATE_LIMITED', undefined, { retryAfterMs: Math.ceil(((1 - conn.tokens) * 1000) / opts.wsRateLimit) });
    return false;
  }

  function onMessage(ws: Socket, message: ArrayBuffer, isBinary: boolean) {
    if (message.byteLength > opts.maxWsPayload) return ws.end(1009, 'message too big');
    if (opts.wsRateLimit > 0 && !withinRate(ws)) return;
    if (isBinary) return sendError(ws, 'BAD_MESSAGE', undefined, { reason: 'binary frames are not accepted; send JSON text frames' });
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(message).toString('utf8'));
    } catch {
      // Not JSON is the client's mistake, answered with an error event; nothing to log.
      return sendError(ws, 'BAD_MESSAGE', undefined, { reason: 'the frame is not JSON' });
    }
    const ref = refOf(parsed);
    const envelope = v.safeParse(EnvelopeSchema, parsed);
    if (!envelope.success) {
      return sendError(ws, 'BAD_MESSAGE', ref, { reason: 'the frame must be an object with a string "event"' });
    }
    const event = envelope.output.event;
    if (!Object.hasOwn(clientSchemas, event)) {
      return sendError(ws, 'UNKNOWN_EVENT', ref, { event: event.slice(0, 64), supported: Object.keys(clientSchemas) });
    }
    const result = v.safeParse(clientSchemas[event as ClientEvent], parsed);
    if (!result.success) {
      return sendError(ws, 'BAD_MESSAGE', ref, { event, reason: v.summarize(result.issues) });
    }
    const msg = result.output;
    switch (msg.event) {
      case 'join':
        join(ws, msg.data.webhookId, msg.data.since, msg.ref).catch((err: unknown) => {
          log.error('join failed', { webhookId: msg.data.webhookId, err });
          sendError(ws, 'INTERNAL', msg.ref, { webhookId: msg.data.webhookId });
        });
        return;
      case 'leave': {
        const room = roomOf(msg.data.webhookId);
        leaveRoom(ws, room);
        return send(ws, 'left', { webhookId: msg.data.webhookId, room }, msg.ref);
      }
      case 'ping':
        return send(ws, 'pong', {}, msg.ref);
    }
  }

  app.ws<Conn>('/ws', {
    compression: uws.DISABLED,
    // uWS cuts a frame over its limit at the header, with no close frame (the peer sees 1006).
    // Its limit sits above ours so that frames over ours arrive and get the contract's 1009;
    // only frames over this ceiling are cut, so a peer still cannot make us buffer without bound.
    maxPayloadLength: hardPayloadCeiling(opts.maxWsPayload),
    maxBackpressure: opts.wsMaxBuffer,
    // A boolean in the C++ binding (the typings say number): a client whose send buffer passes
    // maxBackpressure is closed rather than buffered without bound or silently skipped.
    closeOnBackpressureLimit: 1,
    idleTimeout: opts.wsIdleTimeout,
    sendPingsAutomatically: true,

    // Checked in this order, cheapest refusal of the least trusted first: draining (503), a
    // WebSocket version other than 13 (426), a foreign browser origin (403), a missing or wrong
    // token (401), then the protocol (400) and the connection limit (503). An unauthenticated
    // client learns nothing but 401. (uWS itself routes a bad Sec-WebSocket-Key as a plain GET.)
    upgrade(res, req, context) {
      const offered = req.getHeader('sec-websocket-protocol');
      const key = req.getHeader('sec-websocket-key');
      const extensions = req.getHeader('sec-websocket-extensions');
      const origin = req.getHeader('origin');
      const authorization = req.getHeader('authorization');
      const version = req.getHeader('sec-websocket-version');
      const protocols = offered.split(',').map((p) => p.trim());
      const refuse = (status: number, body: string) => {
        metrics.rejectedUpgrades.inc(status);
        sendHttp({ res, done: false }, status, body, refusalHeaders[status] ?? json);
      };
      if (deps.isDraining()) return refuse(503, drainingBody);
      if (version !== '13') return refuse(426, badVersionBody);
      if (!auth.allowsOrigin(origin)) return refuse(403, forbiddenOriginBody);
      if (!auth.allowsUpgrade(authorization, protocols)) return refuse(401, unauthorizedBody);
      if (!protocols.includes(PROTOCOL)) return refuse(400, unsupportedProtocol);
      // `open` runs inside res.upgrade, synchronously, so `sockets` already counts every upgrade.
      if (sockets.size >= opts.maxConnections) return refuse(503, tooManyConnectionsBody);
      const now = Date.now();
      res.upgrade<Conn>(
        {
          id: randomUUID(),
          rooms: new Set(),
          closed: false,
          tokens: opts.wsRateBurst,
          filledAt: now,
          refused: 0,
          refusedSince: now,
          overLimit: false,
          pending: 0,
          replays: Promise.resolve(),
          onDrain: undefined,
        },
        key,
        PROTOCOL,
        extensions,
        context,
      );
    },

    open(ws) {
      sockets.add(ws);
      metrics.openSockets.inc();
      send(ws, 'connected', { connectionId: ws.getUserData().id, protocol: PROTOCOL });
    },

    message: onMessage,

    drain(ws) {
      const conn = ws.getUserData();
      if (conn.onDrain !== undefined && ws.getBufferedAmount() <= replayLowWater) conn.onDrain();
    },

    close(ws, code, message) {
      const conn = ws.getUserData();
      conn.closed = true;
      // A replay waiting for this socket to drain gives its page back.
      conn.onDrain?.();
      sockets.delete(ws);
      metrics.openSockets.dec();
      metrics.joinedRooms.dec(conn.rooms.size);
      // uWS unsubscribes a closed socket from all its topics itself.
      for (const room of conn.rooms) forget(ws, room);
      conn.rooms.clear();
      // uWS 20.30 closes a socket past maxBackpressure by shutting down its read side, so the
      // close arrives as 1006 with no message, exactly like a peer that vanished. The check
      // after each send and publish (see checkBuffers) tells the two apart.
      if (conn.overLimit && code === 1006 && message.byteLength === 0) {
        metrics.backpressureCloses.inc();
        log.warn('closed a WebSocket client that could not keep up', { connectionId: conn.id, maxBuffer: opts.wsMaxBuffer });
      }
    },
  });

  // A plain GET (no Upgrade header) never reaches the ws route; tell the caller what /ws is.
  app.get('/ws', (res) => sendHttpError({ res, done: false }, new HttpError('upgrade_required', undefined, { protocols: [PROTOCOL] })));

  return {
    /** Sends each committed request to its room; the JSON was serialised once, at capture. */
    publish(rows: readonly PendingRow[]): void {
      // Bytes published per room, for the backpressure check: one native call per member after.
      let reached: Map<Set<Socket>, number> | undefined;
      for (const row of rows) {
        const room = roomOf(row.webhookId);
        const set = members.get(room);
        if (set === undefined) continue;
        const frame = newRequestFrame(row.json);
        app.publish(room, frame, false);
        metrics.publishes.inc();
        reached ??= new Map();
        reached.set(set, (reached.get(set) ?? 0) + Buffer.byteLength(frame));
      }
      if (reached !== undefined) checkBuffers(reached);
    },

    /** Tells a deleted webhook's room, then empties it. */
    webhookDeleted(webhookId: string): void {
      const room = roomOf(webhookId);
      // Sent to each member directly: a publish is delivered when uWS drains its topic tree,
      // and by then the unsubscribe below would have dropped it.
      for (const ws of [...(members.get(room) ?? [])]) {
        ws.cork(() => {
          sendError(ws, 'WEBHOOK_DELETED', undefined, { webhookId });
          leaveRoom(ws, room);
        });
      }
    },

    /** Sends every socket `disconnect` with the reason, then closes it with 1001 (going away). */
    close(reason: string): void {
      for (const ws of [...sockets]) {
        ws.cork(() => {
          send(ws, 'disconnect', { reason });
          ws.end(1001, reason);
        });
      }
    },

    get connections() {
      return sockets.size;
    },
  };
}

export type Realtime = ReturnType<typeof createRealtime>;

const roomPrefix = roomOf('');
const MiB = 1024 * 1024;
export const hardPayloadCeiling = (max: number) => Math.max(4 * max, MiB);

/** The `ref` of a client frame, if it has a usable one, so even a rejected frame's error echoes it. */
function refOf(x: unknown): Ref {
  if (typeof x !== 'object' || x === null) return undefined;
  const ref = (x as { ref?: unknown }).ref;
  return v.is(RefSchema, ref) ? ref : undefined;
}
