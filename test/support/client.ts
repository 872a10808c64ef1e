/**
 * What the SDK's tests share: waiting for events, a recorder of everything a client emits, a
 * `ws` that taps frames, and a scripted server whose sockets the test drives frame by frame.
 */
import * as assert from 'uvu/assert';
import WS from 'ws';
import { createClient, type ClientEvents, type HookyClient } from '../../src/client/index.js';
import { http } from './http.js';
import { uniqueId } from './server.js';
import type { CleanupCtx } from './suite.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds, so tests wait for events rather than sleep a guessed time. */
export async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

export async function newWebhook(base: string, token?: string): Promise<string> {
  const id = uniqueId('sdk');
  const res = await http('POST', `${base}/api/webhooks`, JSON.stringify({ id }), token === undefined ? {} : { authorization: `Bearer ${token}` });
  assert.is(res.status, 201, res.text);
  return id;
}

/** Captures one request; resolves with its id once the server has committed it. */
export async function capture(base: string, webhookId: string, body = 'x'): Promise<string> {
  const res = await http('POST', `${base}/h/${webhookId}`, body);
  assert.is(res.status, 200, res.text);
  return (JSON.parse(res.text) as { id: string }).id;
}


export type Logged = { [E in keyof ClientEvents]: { event: E; data: ClientEvents[E]; at: number } }[keyof ClientEvents];
export const allEvents: (keyof ClientEvents)[] = ['connected', 'joined', 'left', 'new-request', 'error', 'disconnect', 'connect_error', 'reconnecting'];

/** Everything a client emits, in order, with the time. */
export function record(client: HookyClient) {
  const log: Logged[] = [];
  for (const event of allEvents) client.on(event, (data) => log.push({ event, data, at: Date.now() } as Logged));
  return {
    log,
    of<E extends keyof ClientEvents>(event: E): ClientEvents[E][] {
      return log.filter((l) => l.event === event).map((l) => l.data as ClientEvents[E]);
    },
    first(event: keyof ClientEvents): number {
      return log.findIndex((l) => l.event === event);
    },
  };
}

export interface WireFrame {
  event: string;
  data: any;
  ref?: number | string;
}

/** A `ws` class that records every frame in and out, and when each socket was made. */
export function tapped(): { Tapped: new (url: string, protocols?: string | string[], options?: WS.ClientOptions) => WS; inbound: WireFrame[]; outbound: WireFrame[]; created: number[] } {
  const inbound: WireFrame[] = [];
  const outbound: WireFrame[] = [];
  const created: number[] = [];
  class Tapped extends WS {
    // The options carry the token's Authorization header: a subclass of ws must pass them on.
    constructor(url: string, protocols?: string | string[], options?: WS.ClientOptions) {
      super(url, protocols, options);
      created.push(Date.now());
      this.on('message', (data) => inbound.push(JSON.parse(String(data)) as WireFrame));
    }
    override send(data: unknown, ...rest: unknown[]): void {
      outbound.push(JSON.parse(String(data)) as WireFrame);
      (WS.prototype.send as (...a: unknown[]) => void).call(this, data, ...rest);
    }
  }
  return { Tapped, inbound, outbound, created };
}


// --- a scripted server ------------------------------------------------------------------

export const rid = (n: number) => `01900000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
export const payload = (n: number, webhookId = 'w') => ({
  id: rid(n),
  webhookId,
  method: 'POST',
  path: '/',
  headers: {},
  queryParams: {},
  body: `n${n}`,
  bodyEncoding: 'utf8',
  size: 2,
  timestamp: new Date().toISOString(),
  sourceIp: '127.0.0.1',
  userAgent: null,
});
export const live = (n: number, webhookId = 'w') => ({ event: 'new-request', data: payload(n, webhookId) });
export const replay = (n: number, ref: unknown, webhookId = 'w') => ({ event: 'new-request', data: payload(n, webhookId), ref });
export const replayed = (ref: unknown, last: number, truncated = false, webhookId = 'w') => ({
  event: 'replayed',
  data: { webhookId, room: `webhook:${webhookId}`, count: 0, truncated, last: rid(last) },
  ref,
});
export const joinedFrame = (ref: unknown, webhookId = 'w') => ({ event: 'joined', data: { webhookId, room: `webhook:${webhookId}` }, ref });

/**
 * Each socket the client opens is scripted by the test, which plays the server; the orders of
 * frames the real server produces only by chance are produced here on purpose.
 */
export function scripted() {
  const sockets: Fake[] = [];
  class Fake {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    readyState = 0;
    binaryType = 'blob';
    readonly sent: WireFrame[] = [];
    readonly listeners = new Map<string, Set<(e: object) => void>>();
    constructor(readonly url: string) {
      sockets.push(this);
    }
    addEventListener(type: string, fn: (e: object) => void) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type)!.add(fn);
    }
    removeEventListener(type: string, fn: (e: object) => void) {
      this.listeners.get(type)?.delete(fn);
    }
    send(data: string) {
      this.sent.push(JSON.parse(data) as WireFrame);
    }
    close(code = 1000, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      queueMicrotask(() => this.fire('close', { code, reason }));
    }
    fire(type: string, extra: object = {}) {
      for (const fn of [...(this.listeners.get(type) ?? [])]) fn({ type, target: this, ...extra });
    }
    // The server's side.
    accept() {
      this.readyState = 1;
      this.fire('open');
      this.push({ event: 'connected', data: { connectionId: `c${sockets.length}`, protocol: 'hooky.v1' } });
    }
    push(frame: object) {
      this.fire('message', { data: JSON.stringify(frame) });
    }
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.fire('close', { code, reason });
    }
    joins() {
      return this.sent.filter((f) => f.event === 'join');
    }
  }
  return {
    Fake,
    async socket(n: number) {
      await until(() => sockets.length >= n, `socket #${n}`);
      return sockets[n - 1]!;
    },
    /** Socket #n accepted and its first join answered `joined`: how most scripted tests open. */
    async joined(n: number) {
      const s = await this.socket(n);
      s.accept();
      const join = s.joins()[0]!;
      s.push(joinedFrame(join.ref, join.data.webhookId as string));
      return { s, join };
    },
  };
}

/**
 * A promise the test awaits further down. If an assertion fails before then, the cleanup's
 * close() rejects it with CLOSED; that must be a failed test, not an unhandled rejection that
 * ends the whole run. The later `await` still sees the rejection.
 */
export function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export function scriptedClient(ctx: CleanupCtx, options: Parameters<typeof createClient>[1] = {}) {
  const server = scripted();
  const client = createClient('ws://scripted.invalid/ws', { WebSocket: server.Fake, pingIntervalMs: 60_000, minDelayMs: 10, ...options });
  ctx.cleanup.push(() => client.close());
  const got: string[] = [];
  client.on('new-request', (r) => got.push(r.id));
  return { client, server, got, rec: record(client) };
}
