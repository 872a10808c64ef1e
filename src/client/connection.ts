/**
 * The SDK's connection loop: one link to `/ws` at a time, opened through reconnecting-websocket,
 * with our own jittered backoff between attempts, an application heartbeat that replaces a link
 * gone silent, and refusals told apart from failures worth retrying.
 */
import ReconnectingWebSocketModule from 'reconnecting-websocket';
import { isPermanentRefusal, PROTOCOL, TOKEN_PROTOCOL_PREFIX } from '../protocol.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { loadWebSocket, socketClass, tokenTransport, type Refusal, type Socket, type TokenTransport, type WebSocketClass } from './socket.js';

// The package ships CommonJS (`module.exports = Class`) under typings that declare a default
// export: Node's ESM loader hands us the class itself, a bundler's interop may wrap it in
// `{ default }`. Take whichever arrived.
type RwsClass = typeof ReconnectingWebSocketModule.default;
type Rws = InstanceType<RwsClass>;
const ReconnectingWebSocket: RwsClass =
  (ReconnectingWebSocketModule as unknown as { default?: RwsClass }).default ?? (ReconnectingWebSocketModule as unknown as RwsClass);

export interface ConnectionOptions extends BackoffOptions {
  connectTimeoutMs: number;
  pingIntervalMs: number;
  maxMissedPongs: number;
  stableAfterMs: number;
  token: string | undefined;
  WebSocket: WebSocketClass | undefined;
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

/** The events the connection loop emits itself. */
export interface ConnectionEvents {
  /** An open connection ended: the server's `reason` when it said why, else what the SDK saw. */
  disconnect: { reason: string; code?: number };
  connect_error: ConnectError;
  /** A reconnect attempt will start after `delay` ms. */
  reconnecting: { attempt: number; delay: number };
}

/** An upgrade refused for good: the `error` event the client emits as it stops. */
export type Refused = {
  code: 'REFUSED';
  message: string;
  status: number;
  error?: string;
};

interface Hooks {
  emit<E extends keyof ConnectionEvents>(event: E, data: ConnectionEvents[E]): void;
  /** A link opened: (re)join every room. */
  opened(): void;
  /** The open link is gone: nothing sent on it will be answered. */
  lost(): void;
  message(raw: unknown): void;
  /** The server refused the upgrade for a reason no retry can fix: stop for good. */
  refused(why: Refused): void;
}

export function createConnection(url: string, o: ConnectionOptions, hooks: Hooks) {
  const sockets = new Set<Socket>();
  const opened = new WeakSet<object>();
  const refusals = new WeakMap<object, Refusal>();

  let rws: Rws | undefined;
  let link: Socket | undefined; // the open socket, if any
  let started = false;
  let closed = false;
  let closing: Promise<void> | undefined;
  let transport: TokenTransport | undefined; // how the token travels, once the class is known
  let told = false; // `disconnect` already emitted for the current link
  let linkError: string | undefined;
  let missed = 0;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let waiting: { timer: ReturnType<typeof setTimeout>; resolve(): void } | undefined;

  const send = (frame: object) => {
    // maxEnqueuedMessages is 0: a frame sent while down is dropped, never queued for later. The
    // open hook (re)joins, so nothing is sent twice.
    if (link) rws?.send(JSON.stringify(frame));
  };

  /**
   * An upgrade refused for a reason no retry can fix. Retrying a wrong token forever would only
   * fill the server's log with 401s and hide the mistake behind `reconnecting` events: stop,
   * and say why.
   */
  function refuse(refusal: Refusal, cause: ConnectError) {
    if (closed) return; // a connect_error listener has closed the client already
    hooks.refused({
      code: 'REFUSED',
      message: `the server refused the connection with HTTP ${refusal.status}${cause.code ? ` (${cause.code})` : ''}: ${diagnose(refusal)}; not retrying`,
      status: refusal.status,
      ...(cause.code === undefined ? {} : { error: cause.code }),
    });
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
    if (closed) return url;
    if (started) {
      // reconnecting-websocket counts the attempts since the last connection that lasted
      // `minUptime` (stableAfterMs). Its `reconnect()` (a stalled link) starts the count anew,
      // at 0: that attempt still waits the first backoff, as any reconnect does.
      const attempt = Math.max(1, rws?.retryCount ?? 1);
      const delay = backoffDelay(attempt, o);
      hooks.emit('reconnecting', { attempt, delay });
      await new Promise<void>((resolve) => {
        waiting = { timer: setTimeout(resolve, delay), resolve };
      });
      waiting = undefined;
    }
    started = true;
    return url;
  }

  function onOpen(socket: Socket) {
    if (closed) return;
    link = socket;
    opened.add(socket);
    told = false;
    linkError = undefined;
    missed = 0;
    heartbeat = setInterval(beat, o.pingIntervalMs);
    hooks.opened();
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
    hooks.emit('disconnect', { reason: `no pong to ${missed} pings sent ${o.pingIntervalMs} ms apart`, code: 4000 });
    // Closes the old socket without its listeners (so onClose runs once, here) and connects again.
    rws?.reconnect(4000, 'heartbeat timeout');
    // `ws` would wait up to 30 s for a close frame the dead peer will never send.
    dead?.terminate?.();
  }

  function onClose(code: number, reason: string) {
    if (!link) return; // a failed attempt: its error event reports it as connect_error
    link = undefined;
    clearInterval(heartbeat);
    hooks.lost();
    if (told || closed) return;
    // reconnecting-websocket reports an error on an open link as close first, then error; wait
    // a microtask so the reason can name the error.
    queueMicrotask(() => {
      if (!closed) hooks.emit('disconnect', { reason: reason || linkError || 'connection closed', code });
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
    hooks.emit('connect_error', cause);
    if (refusal && isPermanentRefusal(refusal.status)) refuse(refusal, cause);
  }

  loadWebSocket(o.WebSocket).then(
    (Base) => {
      if (closed) return;
      // Never in the URL: a query string ends up in access logs, proxy logs and browser history.
      transport = o.token === undefined ? undefined : tokenTransport(Base);
      const created = (s: Socket) => {
        sockets.add(s);
        s.addEventListener('close', () => sockets.delete(s));
      };
      const refused = (s: Socket, r: Refusal) => refusals.set(s, r);
      const WebSocket = socketClass(Base, { created, refused }, transport === 'header' ? { authorization: `Bearer ${o.token}` } : undefined);
      // The server selects hooky.v1, never the token's entry, so the token is not echoed back.
      const protocols = transport === 'protocol' ? [PROTOCOL, `${TOKEN_PROTOCOL_PREFIX}${o.token}`] : PROTOCOL;
      rws = new ReconnectingWebSocket(nextUrl, protocols, {
        WebSocket,
        // Delays are waited out in nextUrl, with per-attempt jitter; its attempt count is the
        // package's, reset once a connection has lasted minUptime.
        minUptime: o.stableAfterMs,
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
      rws.addEventListener('message', (e) => {
        // Any frame answers the heartbeat.
        missed = 0;
        hooks.message(e.data);
      });
    },
    (err: unknown) => {
      hooks.emit('connect_error', { message: `no WebSocket implementation: ${err instanceof Error ? err.message : String(err)}` });
    },
  );

  return {
    send,

    /** A link is open: what is sent now reaches the server. */
    get open(): boolean {
      return link !== undefined;
    },

    /** The server said why it is closing the link (`disconnect`): no second event for it. */
    told(): void {
      told = true;
    },

    /** Stops for good: no further attempt; resolves once every socket is closed. Safe to call twice. */
    close(): Promise<void> {
      if (closing) return closing;
      closed = true;
      if (waiting) {
        clearTimeout(waiting.timer);
        waiting.resolve();
      }
      clearInterval(heartbeat);
      link = undefined;
      rws?.close(1000, 'client closed');
      closing = settle(sockets);
      return closing;
    },
  };
}

export type Connection = ReturnType<typeof createConnection>;

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
