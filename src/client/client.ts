/**
 * The SDK's public API: `createClient`, its options, events and errors. It wires the three parts
 * that do the work, each in its own file: the connection loop (connection.ts), the requests
 * awaiting replies (pending.ts) and the rooms followed (rooms.ts), and reads each server frame
 * with the schemas of protocol.ts. Most of its length is the documented public types.
 */
import * as v from 'valibot';
import { EnvelopeSchema, roomOf, serverSchemas, tokenPattern, type CapturedRequest, type ServerFrame, type WsErrorCode } from '../protocol.js';
import { createConnection, type ConnectionEvents } from './connection.js';
import { createEmitter } from './emitter.js';
import { createPending } from './pending.js';
import { createRooms } from './rooms.js';
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
  let connectionId: string | undefined;
  let closing: Promise<void> | undefined;
  let stopped: ErrorData | undefined; // why the client closed: CLOSED, or a REFUSED upgrade

  const conn = createConnection(toWsUrl(url), o, {
    emit: events.emit,
    opened: () => rooms.rejoinAll(),
    lost() {
      connectionId = undefined;
      pending.reset();
      rooms.lost();
    },
    message: onMessage,
    refused(why) {
      // Every pending join, and every later one, rejects with REFUSED; one `error` says why.
      void shutdown(why);
      events.emit('error', why);
    },
  });
  const pending = createPending(o, { send: conn.send, rejoin: (ref, p) => rooms.rejoin(ref, p) });
  const rooms = createRooms(o, {
    pending,
    send: conn.send,
    open: () => conn.open,
    joined: (data) => events.emit('joined', data),
    deliver: (req) => events.emit('new-request', req),
  });

  /** Stops for good: every pending join rejects with `why`, the socket closes, nothing reconnects. */
  function shutdown(why: ErrorData): Promise<void> {
    if (closing) return closing;
    stopped = why;
    rooms.dropAll(why);
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
      case 'joined':
        return rooms.joined(frame.data, ref);
      case 'new-request':
        return rooms.newRequest(frame.data, ref);
      case 'replayed':
        return rooms.replayed(frame.data, ref);
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
    if (p?.kind === 'join') rooms.refused(p, ref!, err);
    if (err.code === 'WEBHOOK_DELETED' && err.webhookId !== undefined) rooms.deleted(err.webhookId, err);
    events.emit('error', err);
  }

  return {
    on: events.on,
    off: events.off,

    join(webhookId, { since } = {}) {
      if (closing) return Promise.reject(new HookyError({ ...(stopped ?? { code: 'CLOSED', message: 'the client is closed' }), webhookId }));
      return rooms.follow(webhookId, since).catch((err: ErrorData) => Promise.reject(new HookyError(err)));
    },

    leave(webhookId) {
      rooms.unfollow(webhookId, { code: 'LEFT', message: 'left before the join completed', webhookId });
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
