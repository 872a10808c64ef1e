import ReconnectingWebSocketModule from 'reconnecting-websocket';
import * as v from 'valibot';
import { CapturedRequestSchema, PROTOCOL, requestIdFloor, roomOf, TOKEN_PROTOCOL_PREFIX, type CapturedRequest, type WsErrorCode } from '../protocol.js';
import { backoffDelay } from './backoff.js';
import { createEmitter } from './emitter.js';
import { createRoom, endReplay, interrupt, receive, resumeFrom, type RoomState } from './rooms.js';
import { loadWebSocket, socketClass, tokenTransport, type Refusal, type Socket, type TokenTransport, type WebSocketClass } from './socket.js';

// The package ships CommonJS (`module.exports = Class`) under typings that declare a default
// export: Node's ESM loader hands us the class itself, a bundler's interop may wrap it in
// `{ default }`. Take whichever arrived.
type RwsClass = typeof ReconnectingWebSocketModule.default;
type Rws = InstanceType<RwsClass>;
const ReconnectingWebSocket: RwsClass =
  (ReconnectingWebSocketModule as unknown as { default?: RwsClass }).default ?? (ReconnectingWebSocketModule as unknown as RwsClass);

export interface ClientOptions {
  /**
   * The server's API token (`HOOKY_API_TOKEN`). Sent as `Authorization: Bearer` by `ws` (Node),
   * as the `hooky.token.<token>` subprotocol by a browser's WebSocket; never in the URL.
   */
  token?: string;
  /** WebSocket class to use; default the platform's, or the `ws` package in Node 20. */
  WebSocket?: WebSocketClass;
  /** Base of the first reconnect wait, ms. Default 500. */
  minDelayMs?: number;
  /** Longest reconnect wait, ms. Default 30 000. */
  maxDelayMs?: number;
  /** Growth of the wait per failed attempt. Default 2. */
  factor?: number;
  /** Random fraction of every wait, 0–1. Default 0.5: the first wait is 250–500 ms. */
  jitter?: number;
  /** An attempt that has not opened by then is abandoned, ms. Default 10 000. */
  connectTimeoutMs?: number;
  /** Interval of the application-level `ping`, ms. Default 15 000. */
  pingIntervalMs?: number;
  /** Pings left unanswered before the link counts as dead. Default 2: found within 45 s. */
  maxMissedPongs?: number;
  /** A connection that lasts this long resets the backoff, ms. Default 5 000. */
  stableAfterMs?: number;
}

const defaults = {
  minDelayMs: 500, // the first reconnect waits 250–500 ms
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.5,
  connectTimeoutMs: 10_000,
  pingIntervalMs: 15_000,
  maxMissedPongs: 2, // dead after 2 unanswered pings: at most 3 × 15 s after the last frame
  stableAfterMs: 5_000,
} satisfies Required<Omit<ClientOptions, 'WebSocket' | 'token'>>;

/**
 * Codes a rejected promise or an `error` event may carry: the server's, and four of the SDK's.
 * `REFUSED`: the server refused the upgrade for good (bad token, origin, protocol); the client
 * has stopped.
 */
export type ClientErrorCode = WsErrorCode | 'INVALID_FRAME' | 'LEFT' | 'CLOSED' | 'REFUSED';

/** The data of an `error` event: the server's `{code, message, …}`. */
export interface ErrorData {
  code: ClientErrorCode;
  message: string;
  webhookId?: string;
  /** `REFUSED`: the HTTP status of the refused upgrade. */
  status?: number;
  [extra: string]: unknown;
}

/** Why an attempt to connect failed. */
export interface ConnectError {
  message: string;
  /** `ECONNREFUSED`, `TIMEOUT`, or the `error` of a refused upgrade's JSON body. */
  code?: string;
  /** HTTP status of a refused upgrade (not exposed by browsers). */
  status?: number;
  /** Body of a refused upgrade, parsed if JSON (not exposed by browsers). */
  body?: unknown;
}

export interface ClientEvents {
  connected: { connectionId: string; protocol: string };
  /** `last`: the newest request of the webhook when the join took effect (null: none yet). */
  joined: { webhookId: string; room: string; last?: string | null };
  left: { webhookId: string; room: string };
  /** Each captured request once, in capture order per room, across reconnects. */
  'new-request': CapturedRequest;
  error: ErrorData;
  /** An open connection ended: the server's `reason` when it said why, else what the SDK saw. */
  disconnect: { reason: string; code?: number };
  connect_error: ConnectError;
  /** A reconnect attempt will start after `delay` ms. */
  reconnecting: { attempt: number; delay: number };
}

/** Rejection of `join` or `leave`. */
export class HookyError extends Error {
  readonly code: ClientErrorCode;
  /** `REFUSED`: the HTTP status of the refused upgrade (401, 403, 400, 426). */
  readonly status: number | undefined;
  readonly data: ErrorData;
  constructor(data: ErrorData) {
    super(data.message);
    this.name = 'HookyError';
    this.code = data.code;
    this.status = data.status;
    this.data = data;
  }
}

export interface HookyClient {
  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof ClientEvents>(event: E, listener: (data: ClientEvents[E]) => void): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: (data: ClientEvents[E]) => void): void;
  /**
   * Follows a webhook's room, now and after every reconnect. Resolves on `joined`; rejects with a
   * {@link HookyError} on `error` (`WEBHOOK_NOT_FOUND`, …). `since` replays the requests captured
   * after that request id first.
   */
  join(webhookId: string, options?: { since?: string }): Promise<ClientEvents['joined']>;
  /** Stops following a room; resolves on `left` (at once when not connected). */
  leave(webhookId: string): Promise<ClientEvents['left']>;
  /** Stops for good; resolves once the socket is closed. Safe to call twice. */
  close(): Promise<void>;
  /** The server's id for the current connection, while connected. */
  readonly connectionId: string | undefined;
}

const RefSchema = v.optional(v.union([v.string(), v.number()]));
const FrameSchema = v.object({ event: v.string(), data: v.optional(v.unknown()), ref: RefSchema });
const RoomSchema = v.object({ webhookId: v.string(), room: v.string() });
const frameData = {
  connected: v.object({ connectionId: v.string(), protocol: v.string() }),
  joined: v.object({ webhookId: v.string(), room: v.string(), last: v.exactOptional(v.nullable(v.string())) }),
  left: RoomSchema,
  replayed: v.object({ webhookId: v.string(), room: v.string(), count: v.number(), truncated: v.boolean(), last: v.string() }),
  'new-request': CapturedRequestSchema,
  error: v.looseObject({ code: v.string(), message: v.string(), webhookId: v.optional(v.string()) }),
  disconnect: v.object({ reason: v.string() }),
  pong: v.unknown(),
} as const;
type FrameName = keyof typeof frameData;
type Frame = { [K in FrameName]: { event: K; data: v.InferOutput<(typeof frameData)[K]>; ref: number | string | undefined } }[FrameName];

/** Failures no retry can fix: the room is dropped and its `join` rejected. Others are retried. */
const transient = new Set<string>(['RATE_LIMITED', 'INTERNAL', 'OVERLOADED']);

/**
 * Refused upgrades that no retry can fix: a missing or wrong token (401), a foreign origin (403),
 * no hooky.v1 (400), a WebSocket version other than 13 (426). The client stops on them. Every
 * other refusal (503 while draining or full, a proxy's 502 or 404 during a deploy) is retried.
 */
const permanent = new Set([400, 401, 403, 426]);

// What the server accepts in HOOKY_API_TOKEN (src/config.ts): characters valid both in a header
// and in a subprotocol name, so either transport carries the token unchanged.
const tokenPattern = /^[A-Za-z0-9._~+-]+$/;

interface Waiter {
  resolve(data: ClientEvents['joined']): void;
  reject(err: HookyError): void;
}

/** A room in the rejoin set. */
interface Entry {
  room: RoomState;
  waiters: Waiter[];
  /** The ref of this room's join in flight on the current connection. */
  joinRef: number | undefined;
  joined: boolean;
  retries: number;
}

type Pending =
  /** `answered`: its `joined` arrived (a replay may still be running). */
  | { kind: 'join'; webhookId: string; page: boolean; answered: boolean }
  | {
      kind: 'leave';
      webhookId: string;
      /** Resolved or rejected: a reply to an earlier send of the same leave is then ignored. */
      settled: boolean;
      resolve(data: ClientEvents['left']): void;
      reject(err: HookyError): void;
    };

/**
 * Connects to a hooky server's `/ws` and keeps the connection: reconnects with jittered backoff,
 * rejoins every room with `since` = the last request it delivered there, drops duplicates, and
 * replaces a link that stops answering pings. Accepts `ws(s)://host/ws` or the server's
 * `http(s)://` base URL.
 *
 * @example Browser
 * ```ts
 * import { createClient } from 'hooky/client';
 * const hooky = createClient('https://hooks.example.com');
 * hooky.on('new-request', (req) => console.log(req.method, req.path, req.body));
 * await hooky.join('my-webhook');
 * ```
 * @example Node 20 (uses the `ws` package automatically)
 * ```ts
 * const hooky = createClient('ws://localhost:3000/ws', { pingIntervalMs: 10_000 });
 * hooky.on('connect_error', (e) => console.error(e.status ?? e.code, e.message));
 * hooky.on('reconnecting', ({ attempt, delay }) => console.error(`retry ${attempt} in ${delay} ms`));
 * await hooky.join('my-webhook').catch((e) => e.code === 'WEBHOOK_NOT_FOUND' && process.exit(1));
 * process.on('SIGINT', () => hooky.close());
 * ```
 */
export function createClient(url: string, options: ClientOptions = {}): HookyClient {
  const o = resolveOptions(options);
  const target = toWsUrl(url);
  const events = createEmitter<ClientEvents>();
  const rooms = new Map<string, Entry>();
  const pending = new Map<number | string, Pending>();
  const sockets = new Set<Socket>();
  const opened = new WeakSet<object>();
  const refusals = new WeakMap<object, Refusal>();
  const retryTimers = new Set<ReturnType<typeof setTimeout>>();
  // Requests a RATE_LIMITED refusal may have been about, to send again (see `throttled`).
  const suspects = new Set<number | string>();

  let rws: Rws | undefined;
  let link: Socket | undefined; // the open socket, if any
  let connectionId: string | undefined;
  let refs = 0;
  let started = false;
  let failures = 0; // attempts since the last connection that lasted stableAfterMs
  let closed = false;
  let closing: Promise<void> | undefined;
  let stopped: ErrorData | undefined; // why the client closed: CLOSED, or a REFUSED upgrade
  let transport: TokenTransport | undefined; // how the token travels, once the class is known
  let resend: ReturnType<typeof setTimeout> | undefined;
  let resendDelay = 0;
  let told = false; // `disconnect` already emitted for the current link
  let linkError: string | undefined;
  let missed = 0;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let stable: ReturnType<typeof setTimeout> | undefined;
  let waiting: { timer: ReturnType<typeof setTimeout>; resolve(): void } | undefined;

  const send = (frame: object) => {
    // maxEnqueuedMessages is 0: a frame sent while down is dropped, never queued for later. The
    // open handler (re)joins, so nothing is sent twice.
    if (link) rws?.send(JSON.stringify(frame));
  };
  const deliver = (req: CapturedRequest) => events.emit('new-request', req);

  function sendJoin(entry: Entry, page = false) {
    const ref = ++refs;
    const since = resumeFrom(entry.room);
    pending.set(ref, { kind: 'join', webhookId: entry.room.webhookId, page, answered: false });
    entry.joinRef = ref;
    entry.room.replaying = since !== undefined;
    send({ event: 'join', data: since === undefined ? { webhookId: entry.room.webhookId } : { webhookId: entry.room.webhookId, since }, ref });
  }

  function drop(entry: Entry, err: ErrorData) {
    if (rooms.get(entry.room.webhookId) === entry) rooms.delete(entry.room.webhookId);
    for (const w of entry.waiters.splice(0)) w.reject(new HookyError(err));
  }

  function settleLeave(p: Extract<Pending, { kind: 'leave' }>, outcome: { left: ClientEvents['left'] } | { err: HookyError }): boolean {
    if (p.settled) return false;
    p.settled = true;
    if ('left' in outcome) p.resolve(outcome.left);
    else p.reject(outcome.err);
    return true;
  }

  /** The server drops every membership with the connection: a pending leave is done. */
  function endLeaves() {
    for (const p of pending.values()) if (p.kind === 'leave') settleLeave(p, { left: { webhookId: p.webhookId, room: roomOf(p.webhookId) } });
  }

  const unanswered = (p: Pending) => (p.kind === 'join' ? !p.answered : !p.settled);

  /**
   * The server's rate limit refused a frame. It did not read it, so the refusal carries no ref:
   * any request still unanswered may be the one. After `retryAfterMs`, each of them that is
   * still unanswered then is sent again, one per `retryAfterMs`, which is the pace the server's
   * bucket refills at. Sending a join or a leave twice does no harm: the server treats both as
   * idempotent, and the reply to the superseded ref is ignored.
   */
  function throttled(retryAfterMs: unknown) {
    resendDelay = typeof retryAfterMs === 'number' && retryAfterMs >= 0 ? Math.min(retryAfterMs, o.maxDelayMs) : o.minDelayMs;
    for (const [ref, p] of pending) if (unanswered(p)) suspects.add(ref);
    // Nothing unanswered: the refused frame was a ping, which the next one replaces.
    if (suspects.size > 0) resend ??= setTimeout(resendOne, resendDelay);
  }

  function resendOne() {
    resend = undefined;
    for (const ref of suspects) {
      suspects.delete(ref);
      const p = pending.get(ref);
      if (!p || !unanswered(p)) continue;
      if (p.kind === 'join') {
        const entry = rooms.get(p.webhookId);
        pending.delete(ref);
        // Not superseded by a leave or a newer join: send it again, under a new ref.
        if (!entry || entry.joinRef !== ref) continue;
        sendJoin(entry, p.page);
      } else {
        // Both refs lead to the same leave: whichever reply comes first settles it.
        const again = ++refs;
        pending.set(again, p);
        send({ event: 'leave', data: { webhookId: p.webhookId }, ref: again });
      }
      break;
    }
    if (suspects.size > 0) resend = setTimeout(resendOne, resendDelay);
  }

  function stopResending() {
    clearTimeout(resend);
    resend = undefined;
    suspects.clear();
  }

  /** Stops for good: every pending join rejects with `why`, the socket closes, nothing reconnects. */
  function shutdown(why: ErrorData): Promise<void> {
    if (closing) return closing;
    closed = true;
    stopped = why;
    if (waiting) {
      clearTimeout(waiting.timer);
      waiting.resolve();
    }
    clearInterval(heartbeat);
    clearTimeout(stable);
    for (const t of retryTimers) clearTimeout(t);
    stopResending();
    for (const entry of rooms.values()) drop(entry, { ...why, webhookId: entry.room.webhookId });
    endLeaves();
    pending.clear();
    link = undefined;
    connectionId = undefined;
    rws?.close(1000, 'client closed');
    closing = settle(sockets);
    return closing;
  }

  /**
   * An upgrade refused for a reason no retry can fix. Retrying a wrong token forever would only
   * fill the server's log with 401s and hide the mistake behind `reconnecting` events: stop,
   * reject every pending join with REFUSED, and say why in one `error`.
   */
  function refuse(refusal: Refusal, cause: ConnectError) {
    if (closed) return; // a connect_error listener has closed the client already
    const data: ErrorData = {
      code: 'REFUSED',
      message: `the server refused the connection with HTTP ${refusal.status}${cause.code ? ` (${cause.code})` : ''}: ${diagnose(refusal)}; not retrying`,
      status: refusal.status,
      ...(cause.code === undefined ? {} : { error: cause.code }),
    };
    void shutdown(data);
    events.emit('error', data);
  }

  function diagnose(refusal: Refusal): string {
    if (refusal.status === 401) {
      if (o.token === undefined) return 'it requires an API token (the `token` option)';
      if (transport === 'header' && !refusal.authorization) {
        return 'the token was not sent: a WebSocket class extending ws must pass its third constructor argument on to super()';
      }
      return 'it did not accept the token';
    }
    if (refusal.status === 403) return 'this Origin is not in its HOOKY_ALLOWED_ORIGINS';
    const said = (refusal.body as { message?: unknown } | null)?.message;
    return typeof said === 'string' ? said : 'no retry can change that';
  }

  // Waits out the backoff inside the URL provider: reconnecting-websocket awaits it before each
  // attempt, and its own delays are set to 0, so every wait is ours and freshly jittered.
  async function nextUrl(): Promise<string> {
    // reconnecting-websocket asks for the next URL even when the attempt that failed has made us
    // stop (a refusal): with `closed` set it will not open a socket, so no wait and no event.
    if (closed) return target;
    if (started) {
      const attempt = ++failures;
      const delay = backoffDelay(attempt, o);
      events.emit('reconnecting', { attempt, delay });
      await new Promise<void>((resolve) => {
        waiting = { timer: setTimeout(resolve, delay), resolve };
      });
      waiting = undefined;
    }
    started = true;
    return target;
  }

  function onOpen(socket: Socket) {
    if (closed) return;
    link = socket;
    opened.add(socket);
    told = false;
    linkError = undefined;
    missed = 0;
    heartbeat = setInterval(beat, o.pingIntervalMs);
    stable = setTimeout(() => (failures = 0), o.stableAfterMs);
    for (const entry of rooms.values()) sendJoin(entry);
  }

  function beat() {
    if (missed >= o.maxMissedPongs) return stalled();
    missed++;
    send({ event: 'ping' });
  }

  /** Open but silent: laptop sleep, a dropped NAT entry. Replace it rather than wait for TCP. */
  function stalled() {
    const dead = link;
    told = true;
    events.emit('disconnect', { reason: `no pong to ${missed} pings sent ${o.pingIntervalMs} ms apart`, code: 4000 });
    // Closes the old socket without its listeners (so onClose runs once, here) and connects again.
    rws?.reconnect(4000, 'heartbeat timeout');
    // `ws` would wait up to 30 s for a close frame the dead peer will never send.
    dead?.terminate?.();
  }

  function onClose(code: number, reason: string) {
    if (!link) return; // a failed attempt: its error event reports it as connect_error
    link = undefined;
    connectionId = undefined;
    clearInterval(heartbeat);
    clearTimeout(stable);
    for (const t of retryTimers) clearTimeout(t);
    retryTimers.clear();
    // A new connection starts with a full bucket, and the open handler rejoins every room.
    stopResending();
    endLeaves();
    pending.clear();
    for (const entry of rooms.values()) {
      entry.joined = false;
      entry.joinRef = undefined;
      interrupt(entry.room);
    }
    if (told || closed) return;
    // reconnecting-websocket reports an error on an open link as close first, then error; wait
    // a microtask so the reason can name the error.
    queueMicrotask(() => {
      if (!closed) events.emit('disconnect', { reason: reason || linkError || 'connection closed', code });
    });
  }

  function onError(target: unknown, message: string, error: unknown) {
    if (closed) return;
    if (typeof target === 'object' && target !== null && opened.has(target)) {
      linkError = message;
      return;
    }
    const refusal = typeof target === 'object' && target !== null ? refusals.get(target) : undefined;
    const cause = describe(refusal, message, error, o.connectTimeoutMs);
    events.emit('connect_error', cause);
    if (refusal && permanent.has(refusal.status)) refuse(refusal, cause);
  }

  function onMessage(raw: unknown) {
    missed = 0;
    const frame = parseFrame(raw);
    if (frame === null) return; // an event this SDK does not know yet: forward compatibility
    if ('invalid' in frame) {
      return events.emit('error', { code: 'INVALID_FRAME', message: `the server sent a frame this SDK cannot read: ${frame.invalid}` });
    }
    const ref = frame.ref;
    switch (frame.event) {
      case 'connected':
        connectionId = frame.data.connectionId;
        return events.emit('connected', frame.data);
      case 'joined': {
        if (ref === undefined) return;
        const entry = rooms.get(frame.data.webhookId);
        // A reply to a join that a leave (or a newer join) has superseded.
        if (!entry || ref !== entry.joinRef) return void pending.delete(ref);
        const p = pending.get(ref);
        if (p?.kind === 'join') p.answered = true;
        // Without a replay to follow, the join is complete.
        if (!entry.room.replaying) {
          pending.delete(ref);
          entry.retries = 0;
        }
        if (p?.kind === 'join' && p.page) return;
        entry.joined = true;
        // A room with no request delivered yet resumes from where the server says it joined:
        // everything after `last` reached us live (null: the webhook had none, so from the start).
        if (resumeFrom(entry.room) === undefined && frame.data.last !== undefined) {
          entry.room.floor = frame.data.last ?? requestIdFloor(0);
        }
        events.emit('joined', frame.data);
        for (const w of entry.waiters.splice(0)) w.resolve(frame.data);
        return;
      }
      case 'new-request': {
        const entry = rooms.get(frame.data.webhookId);
        if (!entry) return;
        // Replayed requests carry their join's ref; one from a superseded join is not ours.
        if (ref !== undefined && ref !== entry.joinRef) return;
        return receive(entry.room, frame.data, ref !== undefined, deliver);
      }
      case 'replayed': {
        if (ref === undefined) return;
        pending.delete(ref);
        const entry = rooms.get(frame.data.webhookId);
        if (!entry || ref !== entry.joinRef) return;
        // The server sends at most HOOKY_REPLAY_LIMIT per join: ask for the next page.
        if (frame.data.truncated) return sendJoin(entry, true);
        entry.retries = 0;
        return endReplay(entry.room, deliver);
      }
      case 'left': {
        const p = ref === undefined ? undefined : pending.get(ref);
        if (p?.kind === 'leave') {
          pending.delete(ref!);
          // The reply to the other send of a leave sent twice (see `throttled`) says nothing new.
          if (!settleLeave(p, { left: frame.data })) return;
        }
        return events.emit('left', frame.data);
      }
      case 'error':
        return onServerError(frame.data as ErrorData, ref);
      case 'disconnect':
        told = true;
        return events.emit('disconnect', { reason: frame.data.reason });
      case 'pong':
        return;
    }
  }

  function onServerError(err: ErrorData, ref: number | string | undefined) {
    const p = ref === undefined ? undefined : pending.get(ref);
    if (p) pending.delete(ref!);
    if (p?.kind === 'leave') settleLeave(p, { err: new HookyError(err) });
    if (err.code === 'RATE_LIMITED' && ref === undefined) throttled(err.retryAfterMs);
    if (p?.kind === 'join') {
      const entry = rooms.get(p.webhookId);
      if (entry && entry.joinRef === ref) {
        if (!transient.has(err.code)) drop(entry, err);
        else {
          // Live requests stay held and the cursor stays put: the retry resumes from it.
          const timer = setTimeout(() => {
            retryTimers.delete(timer);
            // Already joined on this connection (the replay failed): the retry is a page, not a new `joined`.
            if (link && rooms.get(p.webhookId) === entry) sendJoin(entry, p.page || entry.joined);
          }, backoffDelay(++entry.retries, o));
          retryTimers.add(timer);
        }
      }
    }
    // The server has emptied the room: following it again would only fail.
    if (err.code === 'WEBHOOK_DELETED' && err.webhookId !== undefined) {
      const entry = rooms.get(err.webhookId);
      if (entry) drop(entry, err);
    }
    events.emit('error', err);
  }

  loadWebSocket(o.WebSocket).then(
    (Base) => {
      if (closed) return;
      // Never in the URL: a query string ends up in access logs, proxy logs and browser history.
      transport = o.token === undefined ? undefined : tokenTransport(Base);
      const hooks = {
        created(s: Socket) {
          sockets.add(s);
          s.addEventListener('close', () => sockets.delete(s));
        },
        refused: (s: Socket, r: Refusal) => refusals.set(s, r),
      };
      const WebSocket = socketClass(Base, hooks, transport === 'header' ? { authorization: `Bearer ${o.token}` } : undefined);
      // The server selects hooky.v1, never the token's entry, so the token is not echoed back.
      const protocols = transport === 'protocol' ? [PROTOCOL, `${TOKEN_PROTOCOL_PREFIX}${o.token}`] : PROTOCOL;
      rws = new ReconnectingWebSocket(nextUrl, protocols, {
        WebSocket,
        // Delays are waited out in nextUrl, with per-attempt jitter.
        minReconnectionDelay: 0,
        maxReconnectionDelay: 0,
        reconnectionDelayGrowFactor: 1,
        connectionTimeout: o.connectTimeoutMs,
        maxEnqueuedMessages: 0,
      });
      rws.binaryType = 'arraybuffer';
      rws.addEventListener('open', (e) => onOpen(e.target as Socket));
      rws.addEventListener('close', (e) => onClose(e.code, e.reason));
      rws.addEventListener('error', (e) => onError(e.target, e.message, (e as { error?: unknown }).error));
      rws.addEventListener('message', (e) => onMessage(e.data));
    },
    (err: unknown) => {
      events.emit('connect_error', { message: `no WebSocket implementation: ${err instanceof Error ? err.message : String(err)}` });
    },
  );

  return {
    on: events.on,
    off: events.off,

    join(webhookId, { since } = {}) {
      if (closed) return Promise.reject(new HookyError({ ...(stopped ?? { code: 'CLOSED', message: 'the client is closed' }), webhookId }));
      let entry = rooms.get(webhookId);
      if (entry?.joined) return Promise.resolve({ webhookId, room: roomOf(webhookId) });
      if (!entry) {
        entry = { room: createRoom(webhookId, since), waiters: [], joinRef: undefined, joined: false, retries: 0 };
        rooms.set(webhookId, entry);
        if (link) sendJoin(entry);
      }
      const waiting = entry;
      return new Promise((resolve, reject) => waiting.waiters.push({ resolve, reject }));
    },

    leave(webhookId) {
      const entry = rooms.get(webhookId);
      if (entry) drop(entry, { code: 'LEFT', message: 'left before the join completed', webhookId });
      const left = { webhookId, room: roomOf(webhookId) };
      // Not connected: the server holds no membership to end.
      if (!link || closed) return Promise.resolve(left);
      const ref = ++refs;
      const p = new Promise<ClientEvents['left']>((resolve, reject) => pending.set(ref, { kind: 'leave', webhookId, settled: false, resolve, reject }));
      send({ event: 'leave', data: { webhookId }, ref });
      return p;
    },

    close() {
      return shutdown({ code: 'CLOSED', message: 'the client is closed' });
    },

    get connectionId() {
      return connectionId;
    },
  };
}

function resolveOptions(options: ClientOptions) {
  const o = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof typeof defaults)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !(value >= 0) || (key === 'jitter' && value > 1)) {
      throw new TypeError(`hooky client: option ${key} must be a number ${key === 'jitter' ? 'from 0 to 1' : '≥ 0'}, got ${String(value)}`);
    }
    o[key] = value;
  }
  const { token } = options;
  // The token itself stays out of the message: it may end up in a log.
  if (token !== undefined && (typeof token !== 'string' || !tokenPattern.test(token))) {
    throw new TypeError('hooky client: option token must be a non-empty string of A-Z a-z 0-9 . _ ~ + - (what HOOKY_API_TOKEN allows)');
  }
  return { ...o, WebSocket: options.WebSocket, token };
}

/**
 * The `/ws` URL of a server: an http(s) URL is the server's base (`https://host/prefix/` →
 * `wss://host/prefix/ws`); a ws(s) URL is taken as is, `/ws` added when it has no path.
 */
export function toWsUrl(url: string): string {
  const u = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    u.protocol = u.protocol === 'http:' ? 'ws:' : 'wss:';
    u.pathname = u.pathname.replace(/\/*$/, '/ws');
  } else if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  return u.toString();
}

/** The frame, null for an event this SDK does not know, or what was wrong with it. */
function parseFrame(raw: unknown): Frame | null | { invalid: string } {
  if (typeof raw !== 'string') return { invalid: 'a binary frame' };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { invalid: 'not JSON' };
  }
  const frame = v.safeParse(FrameSchema, json);
  if (!frame.success) return { invalid: v.summarize(frame.issues) };
  const { event, ref } = frame.output;
  if (!Object.hasOwn(frameData, event)) return null;
  const data = v.safeParse(frameData[event as FrameName], frame.output.data);
  if (!data.success) return { invalid: `${event}: ${v.summarize(data.issues)}` };
  return { event, data: data.output, ref } as Frame;
}

function describe(refusal: Refusal | undefined, message: string, error: unknown, timeoutMs: number): ConnectError {
  if (refusal) {
    const body = refusal.body as { error?: unknown; message?: unknown } | string;
    const json = typeof body === 'object' && body !== null ? body : undefined;
    const detail = typeof json?.message === 'string' ? json.message : typeof body === 'string' && body ? body.slice(0, 200) : '';
    return {
      message: `upgrade refused with HTTP ${refusal.status}${detail ? `: ${detail}` : ''}`,
      status: refusal.status,
      ...(typeof json?.error === 'string' ? { code: json.error } : {}),
      body: refusal.body,
    };
  }
  if (message === 'TIMEOUT') return { message: `no connection within ${timeoutMs} ms`, code: 'TIMEOUT' };
  const code = (error as { code?: unknown } | undefined)?.code;
  // A browser's error event says nothing more; Node's (an AggregateError for ::1 + 127.0.0.1)
  // may have an empty message but a code.
  return {
    message: message || (typeof code === 'string' ? code : 'WebSocket error (the browser gives no details)'),
    ...(typeof code === 'string' ? { code } : {}),
  };
}

/** Resolves once every socket is closed; after 2 s, terminates those still waiting for a peer. */
async function settle(sockets: Set<Socket>): Promise<void> {
  const open = [...sockets].filter((s) => s.readyState !== 3);
  if (open.length === 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const all = Promise.all(open.map((s) => new Promise<void>((resolve) => s.addEventListener('close', () => resolve()))));
  await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))]);
  clearTimeout(timer);
  for (const s of open) if (s.readyState !== 3) s.terminate?.();
}
