import * as v from 'valibot';
import { EnvelopeSchema, requestIdFloor, roomOf, serverSchemas, tokenPattern, transientWsErrors, type CapturedRequest, type ServerFrame, type WsErrorCode } from '../protocol.js';
import { backoffDelay } from './backoff.js';
import { createConnection, type ConnectionEvents } from './connection.js';
import { createEmitter } from './emitter.js';
import { createPending, type PendingJoin } from './pending.js';
import { createRoom, endReplay, interrupt, receive, resumeFrom, type RoomState } from './rooms.js';
import type { WebSocketClass } from './socket.js';

export type { ConnectError } from './connection.js';

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

export interface ClientEvents {
  connected: { connectionId: string; protocol: string };
  /** `last`: the newest request of the webhook when the join took effect (null: none yet). */
  joined: { webhookId: string; room: string; last?: string | null };
  left: { webhookId: string; room: string };
  /** Each captured request once, in capture order per room, across reconnects. */
  'new-request': CapturedRequest;
  error: ErrorData;
  disconnect: ConnectionEvents['disconnect'];
  connect_error: ConnectionEvents['connect_error'];
  reconnecting: ConnectionEvents['reconnecting'];
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
  const events = createEmitter<ClientEvents>();
  const rooms = new Map<string, Entry>();
  const retryTimers = new Set<ReturnType<typeof setTimeout>>();
  let connectionId: string | undefined;
  let closing: Promise<void> | undefined;
  let stopped: ErrorData | undefined; // why the client closed: CLOSED, or a REFUSED upgrade

  const conn = createConnection(toWsUrl(url), o, {
    emit: events.emit,
    opened: () => {
      for (const entry of rooms.values()) sendJoin(entry);
    },
    lost,
    message: onMessage,
    refused(why) {
      // Every pending join, and every later one, rejects with REFUSED; one `error` says why.
      void shutdown(why);
      events.emit('error', why);
    },
  });
  const pending = createPending(o, {
    send: conn.send,
    rejoin(ref, p) {
      const entry = rooms.get(p.webhookId);
      if (!entry || entry.joinRef !== ref) return false;
      sendJoin(entry, p.page);
      return true;
    },
  });
  const deliver = (req: CapturedRequest) => events.emit('new-request', req);

  function sendJoin(entry: Entry, page = false) {
    const { webhookId } = entry.room;
    const since = resumeFrom(entry.room);
    const ref = pending.join(webhookId, page);
    entry.joinRef = ref;
    entry.room.replaying = since !== undefined;
    conn.send({ event: 'join', data: since === undefined ? { webhookId } : { webhookId, since }, ref });
  }

  function drop(entry: Entry, err: ErrorData) {
    if (rooms.get(entry.room.webhookId) === entry) rooms.delete(entry.room.webhookId);
    for (const w of entry.waiters.splice(0)) w.reject(new HookyError(err));
  }

  /** The link is gone: every room waits for the next one, which rejoins it from its cursor. */
  function lost() {
    connectionId = undefined;
    for (const t of retryTimers) clearTimeout(t);
    retryTimers.clear();
    pending.reset();
    for (const entry of rooms.values()) {
      entry.joined = false;
      entry.joinRef = undefined;
      interrupt(entry.room);
    }
  }

  /** Stops for good: every pending join rejects with `why`, the socket closes, nothing reconnects. */
  function shutdown(why: ErrorData): Promise<void> {
    if (closing) return closing;
    stopped = why;
    for (const t of retryTimers) clearTimeout(t);
    for (const entry of rooms.values()) drop(entry, { ...why, webhookId: entry.room.webhookId });
    pending.reset();
    connectionId = undefined;
    closing = conn.close();
    return closing;
  }

  function onMessage(raw: unknown) {
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
          if (!pending.settleLeave(p, { left: frame.data })) return;
        }
        return events.emit('left', frame.data);
      }
      case 'error':
        return onServerError(frame.data as ErrorData, ref);
      case 'disconnect':
        conn.told();
        return events.emit('disconnect', { reason: frame.data.reason });
      case 'pong':
        return;
    }
  }

  function onServerError(err: ErrorData, ref: number | string | undefined) {
    const p = ref === undefined ? undefined : pending.get(ref);
    if (p) pending.delete(ref!);
    if (p?.kind === 'leave') pending.settleLeave(p, { err: new HookyError(err) });
    if (err.code === 'RATE_LIMITED' && ref === undefined) pending.throttled(err.retryAfterMs);
    if (p?.kind === 'join') retryOrDrop(p, ref!, err);
    // The server has emptied the room: following it again would only fail.
    if (err.code === 'WEBHOOK_DELETED' && err.webhookId !== undefined) {
      const entry = rooms.get(err.webhookId);
      if (entry) drop(entry, err);
    }
    events.emit('error', err);
  }

  /** A join the server refused: dropped when no retry can help, else sent again after a backoff. */
  function retryOrDrop(p: PendingJoin, ref: number | string, err: ErrorData) {
    const entry = rooms.get(p.webhookId);
    if (!entry || entry.joinRef !== ref) return;
    if (!transientWsErrors.has(err.code)) return drop(entry, err);
    // Live requests stay held and the cursor stays put: the retry resumes from it.
    const timer = setTimeout(() => {
      retryTimers.delete(timer);
      // Already joined on this connection (the replay failed): the retry is a page, not a new `joined`.
      if (conn.open && rooms.get(p.webhookId) === entry) sendJoin(entry, p.page || entry.joined);
    }, backoffDelay(++entry.retries, o));
    retryTimers.add(timer);
  }

  return {
    on: events.on,
    off: events.off,

    join(webhookId, { since } = {}) {
      if (closing) return Promise.reject(new HookyError({ ...(stopped ?? { code: 'CLOSED', message: 'the client is closed' }), webhookId }));
      let entry = rooms.get(webhookId);
      if (entry?.joined) return Promise.resolve({ webhookId, room: roomOf(webhookId) });
      if (!entry) {
        entry = { room: createRoom(webhookId, since), waiters: [], joinRef: undefined, joined: false, retries: 0 };
        rooms.set(webhookId, entry);
        if (conn.open) sendJoin(entry);
      }
      const waiting = entry;
      return new Promise((resolve, reject) => waiting.waiters.push({ resolve, reject }));
    },

    leave(webhookId) {
      const entry = rooms.get(webhookId);
      if (entry) drop(entry, { code: 'LEFT', message: 'left before the join completed', webhookId });
      // Not connected: the server holds no membership to end.
      if (!conn.open || closing) return Promise.resolve({ webhookId, room: roomOf(webhookId) });
      return pending.leave(webhookId);
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
function parseFrame(raw: unknown): ServerFrame | null | { invalid: string } {
  if (typeof raw !== 'string') return { invalid: 'a binary frame' };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { invalid: 'not JSON' };
  }
  const envelope = v.safeParse(EnvelopeSchema, json);
  if (!envelope.success) return { invalid: v.summarize(envelope.issues) };
  const { event } = envelope.output;
  if (!Object.hasOwn(serverSchemas, event)) return null;
  const frame = v.safeParse(serverSchemas[event as ServerFrame['event']], json);
  if (!frame.success) return { invalid: `${event}: ${v.summarize(frame.issues)}` };
  return frame.output as ServerFrame;
}
