import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, connect, type Server as NetServer, type Socket as NetSocket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { http } from './support/http.js';
import { figures } from './support/observe.js';
import { freePort, withCleanup, type CleanupCtx } from './support/suite.js';
import WS from 'ws';
import { backoffDelay, createClient, HookyError, toWsUrl, type ClientEvents, type HookyClient } from '../src/client/index.js';
import { startServer, uniqueId } from './support/server.js';

// --- helpers ------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds, so tests wait for events rather than sleep a guessed time. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function newWebhook(base: string, token?: string): Promise<string> {
  const id = uniqueId('sdk');
  const res = await http('POST', `${base}/api/webhooks`, JSON.stringify({ id }), token === undefined ? {} : { authorization: `Bearer ${token}` });
  assert.is(res.status, 201, res.text);
  return id;
}

/** Captures one request; resolves with its id once the server has committed it. */
async function capture(base: string, webhookId: string, body = 'x'): Promise<string> {
  const res = await http('POST', `${base}/h/${webhookId}`, body);
  assert.is(res.status, 200, res.text);
  return (JSON.parse(res.text) as { id: string }).id;
}


type Logged = { [E in keyof ClientEvents]: { event: E; data: ClientEvents[E]; at: number } }[keyof ClientEvents];
const allEvents: (keyof ClientEvents)[] = ['connected', 'joined', 'left', 'new-request', 'error', 'disconnect', 'connect_error', 'reconnecting'];

/** Everything a client emits, in order, with the time. */
function record(client: HookyClient) {
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

interface WireFrame {
  event: string;
  data: any;
  ref?: number | string;
}

/** A `ws` class that records every frame in and out, and when each socket was made. */
function tapped() {
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


// --- backoff -------------------------------------------------------------------------------

const backoff = suite('backoff');

backoff('grows by the factor, stops at the ceiling, and draws its jitter afresh on every attempt', () => {
  const o = { minDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: 0.5 };
  assert.equal([1, 2, 3, 4].map((n) => backoffDelay(n, o, () => 0)), [500, 1000, 2000, 4000]);
  assert.is(backoffDelay(20, o, () => 0), 30_000);
  assert.is(backoffDelay(1, o, () => 1), 250);
  const draws = Array.from({ length: 200 }, () => backoffDelay(1, o));
  assert.ok(draws.every((d) => d >= 250 && d <= 500));
  assert.ok(new Set(draws).size > 50, 'every call draws anew');
  // With factor 2 and jitter 0.5 a wait is never shorter than the one before, up to the ceiling
  // (500 × 2^5 = 16 s is the last base under it)...
  for (let n = 1; n < 6; n++) assert.ok(backoffDelay(n + 1, o, () => 1) >= backoffDelay(n, o, () => 0));
  // ...where the waits still spread, over 15–30 s.
  assert.is(backoffDelay(9, o, () => 1), 15_000);
});

backoff.run();

const urls = suite('server URL');

urls('toWsUrl: an http(s) URL is the base /ws hangs off; a ws URL is kept', () => {
  assert.is(toWsUrl('http://localhost:3000'), 'ws://localhost:3000/ws');
  assert.is(toWsUrl('https://hooks.example.com/'), 'wss://hooks.example.com/ws');
  assert.is(toWsUrl('https://example.com/hooky/'), 'wss://example.com/hooky/ws');
  assert.is(toWsUrl('https://example.com/hooky'), 'wss://example.com/hooky/ws');
  assert.is(toWsUrl('ws://127.0.0.1:9'), 'ws://127.0.0.1:9/ws');
  assert.is(toWsUrl('ws://127.0.0.1:9/custom/socket'), 'ws://127.0.0.1:9/custom/socket');
});

urls.run();

// --- the replay state machine, against a scripted server --------------------------------------

const rid = (n: number) => `01900000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
const payload = (n: number, webhookId = 'w') => ({
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
const live = (n: number, webhookId = 'w') => ({ event: 'new-request', data: payload(n, webhookId) });
const replay = (n: number, ref: unknown, webhookId = 'w') => ({ event: 'new-request', data: payload(n, webhookId), ref });
const replayed = (ref: unknown, last: number, truncated = false, webhookId = 'w') => ({
  event: 'replayed',
  data: { webhookId, room: `webhook:${webhookId}`, count: 0, truncated, last: rid(last) },
  ref,
});
const joinedFrame = (ref: unknown, webhookId = 'w') => ({ event: 'joined', data: { webhookId, room: `webhook:${webhookId}` }, ref });

/**
 * Each socket the client opens is scripted by the test, which plays the server; the orders of
 * frames the real server produces only by chance are produced here on purpose.
 */
function scripted() {
  const sockets: Fake[] = [];
  class Fake {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    readyState = 0;
    binaryType = 'blob';
    readonly sent: WireFrame[] = [];
    private readonly listeners = new Map<string, Set<(e: object) => void>>();
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
function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

function scriptedClient(ctx: CleanupCtx, options: Parameters<typeof createClient>[1] = {}) {
  const server = scripted();
  const client = createClient('ws://scripted.invalid/ws', { WebSocket: server.Fake, pingIntervalMs: 60_000, minDelayMs: 10, ...options });
  ctx.cleanup.push(() => client.close());
  const got: string[] = [];
  client.on('new-request', (r) => got.push(r.id));
  return { client, server, got, rec: record(client) };
}

const replays = withCleanup('replay and resume (scripted server)');

replays('live requests during a replay are held, then delivered once each, in id order', async (ctx) => {
  const { client, server, got } = scriptedClient(ctx);
  const joining = later(client.join('w', { since: rid(1) }));
  const s = await server.socket(1);
  s.accept();
  const join = s.joins()[0]!;
  assert.equal(join.data, { webhookId: 'w', since: rid(1) });
  s.push(joinedFrame(join.ref));
  await joining;
  s.push(live(5));
  s.push(replay(2, join.ref));
  s.push(live(3)); // also in the replay
  s.push(replay(3, join.ref));
  s.push(replay(4, join.ref));
  s.push(live(6));
  // The live 5 arrived first but must not pass the replay, nor move the cursor past 3 and 4.
  assert.equal(got, [rid(2), rid(3), rid(4)]);
  s.push(replayed(join.ref, 4));
  assert.equal(got, [rid(2), rid(3), rid(4), rid(5), rid(6)]);
  s.push(live(7));
  s.push(live(7));
  s.push(live(6));
  assert.equal(got, [rid(2), rid(3), rid(4), rid(5), rid(6), rid(7)]);
});

replays('a live request with a smaller id than the last one is still delivered (commit order across instances), a repeated one is not', async (ctx) => {
  const { client, server, got } = scriptedClient(ctx);
  const joining = later(client.join('w'));
  const s = await server.socket(1);
  s.accept();
  s.push(joinedFrame(s.joins()[0]!.ref));
  await joining;
  s.push(live(5));
  s.push(live(3)); // committed after 5 by another writer
  s.push(live(5));
  s.push(live(3));
  assert.equal(got, [rid(5), rid(3)]);
});

replays('a truncated replay continues with since = last, without a second joined', async (ctx) => {
  const { client, server, got, rec } = scriptedClient(ctx);
  const joining = later(client.join('w', { since: rid(1) }));
  const { s, join: first } = await server.joined(1);
  await joining;
  s.push(replay(2, first.ref));
  s.push(live(9));
  s.push(replay(3, first.ref));
  s.push(replayed(first.ref, 3, true));
  const next = s.joins()[1]!;
  assert.equal(next.data, { webhookId: 'w', since: rid(3) });
  assert.is.not(next.ref, first.ref);
  s.push(joinedFrame(next.ref));
  s.push(replay(4, next.ref));
  assert.equal(got, [rid(2), rid(3), rid(4)]);
  s.push(replayed(next.ref, 4));
  assert.equal(got, [rid(2), rid(3), rid(4), rid(9)]);
  assert.is(rec.of('joined').length, 1);
});

replays('a drop mid-replay resumes from the last contiguous id, never from a held live one', async (ctx) => {
  const { client, server, got, rec } = scriptedClient(ctx);
  const joining = later(client.join('w', { since: rid(1) }));
  const { s: s1, join: j1 } = await server.joined(1);
  await joining;
  s1.push(replay(2, j1.ref));
  s1.push(live(5));
  s1.drop();
  const s2 = await server.socket(2);
  s2.accept();
  const j2 = s2.joins()[0]!;
  assert.equal(j2.data, { webhookId: 'w', since: rid(2) });
  s2.push(joinedFrame(j2.ref));
  for (const n of [3, 4, 5]) s2.push(replay(n, j2.ref));
  s2.push(replayed(j2.ref, 5));
  s2.push(live(6));
  assert.equal(got, [rid(2), rid(3), rid(4), rid(5), rid(6)]);
  assert.equal(rec.of('disconnect'), [{ reason: 'connection closed', code: 1006 }]);
  assert.is(rec.of('reconnecting')[0]!.attempt, 1);
  assert.is(rec.of('joined').length, 2);
});

replays('a room with no request delivered yet resumes from the last id the server gave in joined', async (ctx) => {
  const { client, server } = scriptedClient(ctx);
  const joining = later(client.join('w'));
  const s1 = await server.socket(1);
  s1.accept();
  const j1 = s1.joins()[0]!;
  assert.equal(j1.data, { webhookId: 'w' });
  s1.push({ event: 'joined', data: { webhookId: 'w', room: 'webhook:w', last: rid(7) }, ref: j1.ref });
  await joining;
  s1.drop();
  const s2 = await server.socket(2);
  s2.accept();
  assert.equal(s2.joins()[0]!.data, { webhookId: 'w', since: rid(7) });
});

replays('a webhook with no request at all (last: null) resumes from the very start', async (ctx) => {
  const { client, server } = scriptedClient(ctx);
  const joining = later(client.join('w'));
  const s1 = await server.socket(1);
  s1.accept();
  s1.push({ event: 'joined', data: { webhookId: 'w', room: 'webhook:w', last: null }, ref: s1.joins()[0]!.ref });
  await joining;
  s1.drop();
  const s2 = await server.socket(2);
  s2.accept();
  assert.equal(s2.joins()[0]!.data, { webhookId: 'w', since: '00000000-0000-7000-8000-000000000000' });
});

replays('WEBHOOK_DELETED drops the room: the next connection rejoins only the others', async (ctx) => {
  const { client, server, rec } = scriptedClient(ctx);
  const ja = later(client.join('a'));
  const jb = later(client.join('b'));
  const s1 = await server.socket(1);
  s1.accept();
  for (const j of s1.joins()) s1.push(joinedFrame(j.ref, j.data.webhookId));
  await Promise.all([ja, jb]);
  s1.push({ event: 'error', data: { code: 'WEBHOOK_DELETED', message: 'The webhook was deleted', webhookId: 'a' } });
  assert.equal(rec.of('error'), [{ code: 'WEBHOOK_DELETED', message: 'The webhook was deleted', webhookId: 'a' }]);
  s1.drop();
  const s2 = await server.socket(2);
  s2.accept();
  assert.equal(
    s2.joins().map((j) => j.data.webhookId),
    ['b'],
  );
});

replays('a transient error on a join is retried; a permanent one rejects and is not retried', async (ctx) => {
  const { client, server, rec } = scriptedClient(ctx);
  const a = later(client.join('a'));
  const b = later(client.join('b'));
  const s = await server.socket(1);
  s.accept();
  const [ja, jb] = s.joins();
  s.push({ event: 'error', data: { code: 'INTERNAL', message: 'Internal server error', webhookId: 'a' }, ref: ja!.ref });
  s.push({ event: 'error', data: { code: 'WEBHOOK_NOT_FOUND', message: 'Webhook not found', webhookId: 'b' }, ref: jb!.ref });
  const err = await b.then(
    () => assert.unreachable('join b resolved') as never,
    (e: unknown) => e,
  );
  assert.instance(err, HookyError);
  assert.is((err as HookyError).code, 'WEBHOOK_NOT_FOUND');
  await until(() => s.joins().length === 3, 'the retried join');
  const retry = s.joins()[2]!;
  assert.is(retry.data.webhookId, 'a');
  s.push(joinedFrame(retry.ref, 'a'));
  assert.equal(await a, { webhookId: 'a', room: 'webhook:a' });
  assert.equal(
    rec.of('error').map((e) => e.code),
    ['INTERNAL', 'WEBHOOK_NOT_FOUND'],
  );
  s.drop();
  const s2 = await server.socket(2);
  s2.accept();
  assert.equal(
    s2.joins().map((j) => j.data.webhookId),
    ['a'],
  );
});

replays('a replay that fails after joined is retried from the cursor, live events still held, with no second joined', async (ctx) => {
  const { client, server, got, rec } = scriptedClient(ctx);
  const joining = later(client.join('w', { since: rid(1) }));
  const { s, join: j1 } = await server.joined(1);
  await joining;
  s.push(replay(2, j1.ref));
  s.push(live(4));
  s.push({ event: 'error', data: { code: 'INTERNAL', message: 'Internal server error', webhookId: 'w' }, ref: j1.ref });
  await until(() => s.joins().length === 2, 'the retried join');
  const j2 = s.joins()[1]!;
  assert.equal(j2.data, { webhookId: 'w', since: rid(2) });
  s.push(joinedFrame(j2.ref));
  s.push(replay(3, j2.ref));
  s.push(replay(4, j2.ref));
  s.push(replayed(j2.ref, 4));
  assert.equal(got, [rid(2), rid(3), rid(4)]);
  assert.is(rec.of('joined').length, 1);
});

replays('a frame the SDK cannot read is an INVALID_FRAME error; an unknown event is ignored', async (ctx) => {
  const { server, rec } = scriptedClient(ctx);
  const s = await server.socket(1);
  s.accept();
  s.push({ event: 'from-the-future', data: {} });
  s.fire('message', { data: 'not json' });
  s.push({ event: 'new-request', data: { id: 1 } });
  assert.equal(
    rec.of('error').map((e) => e.code),
    ['INVALID_FRAME', 'INVALID_FRAME'],
  );
  assert.is(rec.of('connected').length, 1);
});

replays('a join refused by the rate limit (RATE_LIMITED, no ref) is sent again after retryAfterMs; an answered one is not', async (ctx) => {
  const { client, server, rec } = scriptedClient(ctx);
  const a = later(client.join('a'));
  const b = later(client.join('b'));
  const s = await server.socket(1);
  s.accept();
  const [ja, jb] = s.joins();
  // The server read `a` and refused `b` unread: its refusal cannot name it.
  const refusedAt = Date.now();
  s.push({ event: 'error', data: { code: 'RATE_LIMITED', message: 'Too many messages; slow down', retryAfterMs: 60 } });
  s.push(joinedFrame(ja!.ref, 'a'));
  await a;
  await until(() => s.joins().length === 3, 'the join sent again');
  assert.ok(Date.now() - refusedAt >= 55, `sent again after ${Date.now() - refusedAt} ms`);
  const again = s.joins()[2]!;
  assert.is(again.data.webhookId, 'b');
  assert.is.not(again.ref, jb!.ref);
  s.push(joinedFrame(again.ref, 'b'));
  assert.equal(await b, { webhookId: 'b', room: 'webhook:b' });
  await sleep(150);
  assert.is(s.joins().length, 3, 'nothing else sent again');
  assert.equal(
    rec.of('error').map((e) => e.code),
    ['RATE_LIMITED'],
  );
});

replays('a leave refused by the rate limit is sent again; it resolves, and emits left, once whichever reply comes', async (ctx) => {
  const { client, server, rec } = scriptedClient(ctx);
  const joining = later(client.join('w'));
  const s = await server.socket(1);
  s.accept();
  s.push(joinedFrame(s.joins()[0]!.ref));
  await joining;
  const leaving = later(client.leave('w'));
  const leaves = () => s.sent.filter((f) => f.event === 'leave');
  s.push({ event: 'error', data: { code: 'RATE_LIMITED', message: 'Too many messages; slow down', retryAfterMs: 20 } });
  await until(() => leaves().length === 2, 'the leave sent again');
  const [first, second] = leaves();
  assert.is.not(second!.ref, first!.ref);
  // Say the first was read after all, late: both sends get a reply.
  s.push({ event: 'left', data: { webhookId: 'w', room: 'webhook:w' }, ref: second!.ref });
  s.push({ event: 'left', data: { webhookId: 'w', room: 'webhook:w' }, ref: first!.ref });
  assert.equal(await leaving, { webhookId: 'w', room: 'webhook:w' });
  assert.equal(rec.of('left'), [{ webhookId: 'w', room: 'webhook:w' }]);
});

replays('a close for the rate limit (1008) is a disconnect like any other: reconnect with backoff, rejoin with since', async (ctx) => {
  const { client, server, got, rec } = scriptedClient(ctx);
  const joining = later(client.join('w', { since: rid(1) }));
  const { s: s1, join: j1 } = await server.joined(1);
  await joining;
  s1.push(replay(2, j1.ref));
  s1.push(replayed(j1.ref, 2));
  s1.drop(1008, 'rate limit exceeded');
  const s2 = await server.socket(2);
  s2.accept();
  assert.equal(s2.joins()[0]!.data, { webhookId: 'w', since: rid(2) });
  assert.equal(got, [rid(2)]);
  assert.equal(rec.of('disconnect'), [{ reason: 'rate limit exceeded', code: 1008 }]);
  assert.equal(
    rec.of('reconnecting').map((r) => r.attempt),
    [1],
  );
  assert.is(rec.of('connect_error').length, 0);
});

replays.run();

// --- against a real server: restart, connect errors, jitter, rooms, stalled links ------------

const restart = withCleanup('server restart');

restart('restart while joined to two rooms: disconnect, growing delays, rejoin, every request once and in order', async (ctx) => {
  const port = await freePort();
  let server = await startServer({ PORT: String(port) });
  ctx.cleanup.push(() => server.close());
  const a = await newWebhook(server.url);
  const b = await newWebhook(server.url);
  const tap = tapped();
  const client = createClient(server.url, { WebSocket: tap.Tapped, minDelayMs: 150 });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  const got: Record<string, string[]> = { [a]: [], [b]: [] };
  const sent: Record<string, string[]> = { [a]: [], [b]: [] };
  client.on('new-request', (r) => got[r.webhookId]!.push(r.id));
  const cap = async (id: string) => void sent[id]!.push(await capture(server.url, id));

  await Promise.all([client.join(a), client.join(b)]);
  await cap(a);
  await cap(b);
  await until(() => got[a]!.length === 1 && got[b]!.length === 1, 'the live requests before the restart');

  await server.close();
  await until(() => rec.of('reconnecting').length >= 4, 'four reconnect attempts');
  // The fourth wait is 600–1200 ms: the server is back and has captured these well within it.
  server = await startServer({ PORT: String(port), HOOKY_REPLAY_LIMIT: '2' });
  for (const id of [a, a, a, b]) await cap(id);
  assert.is(rec.of('connected').length, 1, 'captured before the client came back');
  await until(() => got[a]!.length === 4 && got[b]!.length === 2, 'the requests captured while away');
  await cap(a);
  await cap(b);
  await until(() => got[a]!.length === 5 && got[b]!.length === 3, 'live requests after the rejoin');
  await sleep(200); // room for a duplicate to show up

  assert.equal(got[a], sent[a]);
  assert.equal(got[b], sent[b]);
  assert.equal(rec.of('disconnect'), [{ reason: 'server shutting down' }]);
  assert.ok(rec.first('disconnect') < rec.first('reconnecting'));
  const retries = rec.of('reconnecting');
  assert.equal(
    retries.map((r) => r.attempt),
    retries.map((_, i) => i + 1),
  );
  assert.ok(retries[0]!.delay >= 75 && retries[0]!.delay <= 150, `first wait ${retries[0]!.delay} ms`);
  for (let i = 1; i < retries.length; i++) assert.ok(retries[i]!.delay >= retries[i - 1]!.delay, `waits grow: ${retries.map((r) => r.delay)}`);
  assert.is(rec.of('connected').length, 2);
  assert.equal(rec.of('joined').map((j) => j.webhookId).sort(), [a, a, b, b].sort());

  // On the wire: each room rejoined from the last id delivered; the replay of `a` took two pages.
  const rejoins = tap.outbound.filter((f) => f.event === 'join').slice(2);
  assert.equal(
    rejoins.map((f) => f.data),
    [
      { webhookId: a, since: sent[a]![0] },
      { webhookId: b, since: sent[b]![0] },
      { webhookId: a, since: sent[a]![2] },
    ],
  );
  const replayedIds = tap.inbound.filter((f) => f.event === 'new-request' && f.ref !== undefined).map((f) => f.data.id as string);
  assert.equal(replayedIds.sort(), [...sent[a]!.slice(1, 4), sent[b]![1]!].sort());
  figures('SDK across a server restart', { waits: retries.map((r) => r.delay), delivered: { a: got[a]!.length, b: got[b]!.length }, replayed: replayedIds.length });
});

restart.run();

const connectErrors = withCleanup('connect_error');

connectErrors('server down at start: connect_error with the cause, then connected once it is up', async (ctx) => {
  const port = await freePort();
  const client = createClient(`http://127.0.0.1:${port}`, { minDelayMs: 100 });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  await until(() => rec.of('connect_error').length >= 1, 'connect_error');
  const [err] = rec.of('connect_error');
  assert.is(err!.code, 'ECONNREFUSED');
  assert.match(err!.message, 'ECONNREFUSED');
  assert.is(err!.status, undefined);
  const server = await startServer({ PORT: String(port) });
  ctx.cleanup.push(() => server.close());
  await until(() => rec.of('connected').length === 1, 'connected');
  assert.ok(rec.first('connect_error') < rec.first('reconnecting'));
  assert.ok(rec.first('reconnecting') < rec.first('connected'));
  // And it works: a join now gets the room's requests.
  const id = await newWebhook(server.url);
  await client.join(id);
  const rid = await capture(server.url, id);
  await until(() => rec.of('new-request').length === 1, 'the request');
  assert.is(rec.of('new-request')[0]!.id, rid);
});

connectErrors('an upgrade refused for its protocol: connect_error carries status 400 and the JSON', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  class OtherProtocol extends WS {
    constructor(url: string) {
      super(url, 'graphql-ws');
    }
  }
  const client = createClient(server.url, { WebSocket: OtherProtocol, minDelayMs: 10_000 });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  await until(() => rec.of('connect_error').length === 1, 'connect_error');
  const [err] = rec.of('connect_error');
  assert.is(err!.status, 400);
  assert.is(err!.code, 'unsupported_protocol');
  assert.match(err!.message, /^upgrade refused with HTTP 400: The WebSocket must offer subprotocol hooky.v1/);
  assert.equal((err!.body as { supported: string[] }).supported, ['hooky.v1']);
  assert.is(rec.of('connected').length, 0);
});

connectErrors('an attempt that never opens: connect_error TIMEOUT, and the next attempt follows', async (ctx) => {
  // Accepts TCP and never answers the upgrade.
  const held: NetSocket[] = [];
  const silent = createNetServer((s) => held.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  ctx.cleanup.push(() => new Promise((r) => (held.forEach((s) => s.destroy()), silent.close(r))));
  const client = createClient(`ws://127.0.0.1:${(silent.address() as { port: number }).port}/ws`, { connectTimeoutMs: 150, minDelayMs: 20 });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  await until(() => rec.of('connect_error').length >= 2, 'two timed-out attempts');
  assert.equal(rec.of('connect_error')[0], { message: 'no connection within 150 ms', code: 'TIMEOUT' });
  assert.ok(held.length >= 2);
});

connectErrors.run();

const jitter = withCleanup('jitter');

jitter('50 clients dropped by the same restart do not all retry within the same 100 ms', async (ctx) => {
  const port = await freePort();
  let server = await startServer({ PORT: String(port) });
  ctx.cleanup.push(() => server.close());
  const n = 50;
  const taps = Array.from({ length: n }, () => tapped());
  const clients = taps.map((t) => createClient(server.url, { WebSocket: t.Tapped, minDelayMs: 1000 }));
  ctx.cleanup.push(() => Promise.all(clients.map((c) => c.close())));
  const recs = clients.map(record);
  await until(() => recs.every((r) => r.of('connected').length === 1), 'all connected');

  const closedAt = Date.now();
  await server.close();
  // Back within 50 ms, well before the earliest retry (≥ 500 ms): every first retry succeeds.
  server = await startServer({ PORT: String(port) });
  await until(() => recs.every((r) => r.of('connected').length === 2), 'all reconnected');

  const waits = recs.map((r) => r.of('reconnecting')[0]!.delay);
  assert.ok(waits.every((w) => w >= 500 && w <= 1000), `waits ${waits}`);
  assert.ok(taps.every((t) => t.created.length === 2), 'one retry each');
  const retries = taps.map((t) => t.created[1]! - closedAt).sort((x, y) => x - y);
  let busiest = 0;
  for (let i = 0, j = 0; i < n; i++) {
    while (retries[i]! - retries[j]! >= 100) j++;
    busiest = Math.max(busiest, i - j + 1);
  }
  assert.ok(busiest <= 30, `at most 30 of 50 retries in any 100 ms, got ${busiest}`);
  assert.ok(retries[n - 1]! - retries[0]! >= 250, `retries spread over ${retries[n - 1]! - retries[0]!} ms`);
  figures('SDK jitter, 50 clients', { firstRetryMs: [retries[0], retries[n - 1]], busiest100ms: busiest });
});

jitter.run();

const rooms = withCleanup('join and leave');

rooms('join of an unknown webhook rejects with WEBHOOK_NOT_FOUND and emits the error', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const client = createClient(server.wsUrl);
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  const missing = uniqueId('missing');
  const err = await client.join(missing).then(
    () => assert.unreachable('joined') as never,
    (e: unknown) => e,
  );
  assert.instance(err, HookyError);
  assert.is((err as HookyError).code, 'WEBHOOK_NOT_FOUND');
  assert.is((err as HookyError).message, 'Webhook not found');
  assert.equal(rec.of('error'), [{ code: 'WEBHOOK_NOT_FOUND', message: 'Webhook not found', webhookId: missing }]);
});

rooms('leave resolves on left, and the room is no longer followed', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const client = createClient(server.wsUrl);
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  const id = await newWebhook(server.url);
  assert.equal(await client.join(id), { webhookId: id, room: `webhook:${id}`, last: null });
  await capture(server.url, id);
  await until(() => rec.of('new-request').length === 1, 'the request before leaving');
  assert.equal(await client.leave(id), { webhookId: id, room: `webhook:${id}` });
  assert.equal(rec.of('left'), [{ webhookId: id, room: `webhook:${id}` }]);
  await capture(server.url, id);
  await sleep(200);
  assert.is(rec.of('new-request').length, 1);
});

rooms.run();

// --- access control and refusals ----------------------------------------------------------------

const token = 'sdk-test-token-0123456789abcdef';

/**
 * The shape of a browser's WebSocket: a constructor that takes no options and a socket without
 * `terminate`, so the SDK must send the token as a subprotocol. Underneath it is `ws`, so the
 * test still sees the status of a refusal, which a real browser would hide.
 */
class BrowserLike {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  constructor(url: string, protocols?: string | string[]) {
    return new WS(url, protocols);
  }
}

/** A plain HTTP server that records each upgrade request and refuses it with 503. */
async function upgradeRecorder() {
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
  const server = createHttpServer();
  server.on('upgrade', (req: IncomingMessage, socket: NetSocket) => {
    seen.push({ url: req.url!, headers: req.headers });
    const body = '{"error":"draining","message":"recorded"}';
    socket.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `ws://127.0.0.1:${port}/ws`, seen, close: () => new Promise((r) => server.close(r)) };
}

/** Makes `Base` count the sockets made from it. */
function counting<T extends new (...args: any[]) => object>(Base: T) {
  const created: number[] = [];
  const Counted = class extends Base {
    constructor(...args: any[]) {
      super(...args);
      created.push(Date.now());
    }
  };
  return { Counted, created };
}

/** Waits for a join to reject, and returns its error. */
const rejection = (p: Promise<unknown>) =>
  p.then(
    () => assert.unreachable('resolved') as never,
    (e: unknown) => e as HookyError,
  );

const access = withCleanup('access control and refusals');

access('the token goes as Authorization: Bearer with ws, as a hooky.token subprotocol with a browser-shaped class, never in the URL', async (ctx) => {
  const recorder = await upgradeRecorder();
  ctx.cleanup.push(recorder.close);
  for (const WebSocket of [undefined, BrowserLike]) {
    const client = createClient(recorder.url, { token, minDelayMs: 10_000, ...(WebSocket ? { WebSocket } : {}) });
    ctx.cleanup.push(() => client.close());
    const rec = record(client);
    await until(() => rec.of('connect_error').length === 1, 'the refused attempt');
    // 503 is worth retrying: the next attempt is announced, nothing is rejected.
    assert.is(rec.of('connect_error')[0]!.status, 503);
    assert.is(rec.of('reconnecting').length, 1);
    assert.is(rec.of('error').length, 0);
    await client.close();
  }
  const [node, browser] = recorder.seen;
  assert.is(node!.headers.authorization, `Bearer ${token}`);
  assert.is(node!.headers['sec-websocket-protocol'], 'hooky.v1');
  assert.is(browser!.headers.authorization, undefined);
  assert.is(browser!.headers['sec-websocket-protocol'], `hooky.v1,hooky.token.${token}`);
  for (const { url } of recorder.seen) assert.is(url, '/ws');
});

access('with HOOKY_API_TOKEN set, both transports connect, join and receive', async (ctx) => {
  const server = await startServer({ HOOKY_API_TOKEN: token });
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url, token);
  const clients = [createClient(server.url, { token }), createClient(server.url, { token, WebSocket: BrowserLike })];
  ctx.cleanup.push(() => Promise.all(clients.map((c) => c.close())));
  const recs = clients.map(record);
  await Promise.all(clients.map((c) => c.join(id)));
  const sent = await capture(server.url, id);
  await until(() => recs.every((r) => r.of('new-request').length === 1), 'the request on both');
  for (const r of recs) {
    assert.is(r.of('new-request')[0]!.id, sent);
    assert.is(r.of('connect_error').length, 0);
  }
});

access('a missing or wrong token is refused for good: one attempt, connect_error 401, join rejects REFUSED, error says why', async (ctx) => {
  const server = await startServer({ HOOKY_API_TOKEN: token });
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url, token);
  // A subclass of ws that drops its third argument loses the Authorization header on the way.
  class TwoArguments extends WS {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
    }
  }
  const cases = [
    { given: undefined, Base: WS, why: 'it requires an API token (the `token` option)' },
    { given: 'wrong-token-0123456789abcdef', Base: WS, why: 'it did not accept the token' },
    { given: 'wrong-token-0123456789abcdef', Base: BrowserLike, why: 'it did not accept the token' },
    { given: token, Base: TwoArguments, why: 'the token was not sent: a WebSocket class extending ws must pass its third constructor argument on to super()' },
  ];
  for (const { given, Base, why } of cases) {
    const { Counted, created } = counting(Base as new (...args: any[]) => object);
    const client = createClient(server.url, { WebSocket: Counted, minDelayMs: 20, ...(given === undefined ? {} : { token: given }) });
    ctx.cleanup.push(() => client.close());
    const rec = record(client);
    const err = await rejection(client.join(id));
    assert.instance(err, HookyError);
    assert.is(err.code, 'REFUSED');
    assert.is(err.status, 401);
    assert.is(err.message, `the server refused the connection with HTTP 401 (unauthorized): ${why}; not retrying`);
    const [refused] = rec.of('connect_error');
    assert.is(refused!.status, 401);
    assert.is(refused!.code, 'unauthorized');
    assert.equal(rec.of('error'), [{ code: 'REFUSED', message: err.message, status: 401, error: 'unauthorized' }]);
    assert.ok(rec.first('connect_error') < rec.first('error'));
    await sleep(150); // several backoff waits of 10–20 ms
    assert.is(created.length, 1, 'a single attempt');
    assert.is(rec.of('reconnecting').length, 0);
    assert.is(rec.of('connect_error').length, 1);
    // It stays stopped, and says why to a later join too.
    assert.is((await rejection(client.join(id))).code, 'REFUSED');
    await client.close();
    await client.close();
  }
});

access('a foreign origin (403), a missing hooky.v1 (400) and WebSocket version 8 (426) stop the client too', async (ctx) => {
  const server = await startServer({ HOOKY_ALLOWED_ORIGINS: 'https://app.example.com' });
  ctx.cleanup.push(() => server.close());
  class ForeignOrigin extends WS {
    constructor(url: string, protocols?: string | string[], options?: WS.ClientOptions) {
      super(url, protocols, { ...options, origin: 'https://evil.example' });
    }
  }
  class OtherProtocol extends WS {
    constructor(url: string) {
      super(url, 'graphql-ws');
    }
  }
  class OldVersion extends WS {
    constructor(url: string, protocols?: string | string[], options?: WS.ClientOptions) {
      super(url, protocols, { ...options, protocolVersion: 8 });
    }
  }
  const cases = [
    { Base: ForeignOrigin, status: 403, code: 'forbidden_origin' },
    { Base: OtherProtocol, status: 400, code: 'unsupported_protocol' },
    { Base: OldVersion, status: 426, code: 'upgrade_required' },
  ];
  for (const { Base, status, code } of cases) {
    const { Counted, created } = counting(Base);
    const client = createClient(server.url, { WebSocket: Counted, minDelayMs: 20 });
    ctx.cleanup.push(() => client.close());
    const rec = record(client);
    const err = await rejection(client.join('anything'));
    assert.is(err.code, 'REFUSED', code);
    assert.is(err.status, status);
    assert.is(err.data.error, code);
    assert.match(err.message, new RegExp(`^the server refused the connection with HTTP ${status} \\(${code}\\): [^:]+; not retrying$`));
    assert.is(rec.of('connect_error')[0]!.status, status);
    await sleep(150);
    assert.is(created.length, 1, `${code}: a single attempt`);
    assert.is(rec.of('reconnecting').length, 0);
  }
});

access('503 too_many_connections is retried with backoff until a connection frees up', async (ctx) => {
  const server = await startServer({ HOOKY_MAX_CONNECTIONS: '1' });
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url);
  const first = createClient(server.url);
  ctx.cleanup.push(() => first.close());
  await first.join(id);
  const second = createClient(server.url, { minDelayMs: 50 });
  ctx.cleanup.push(() => second.close());
  const rec = record(second);
  const joining = later(second.join(id));
  await until(() => rec.of('connect_error').length >= 3 && rec.of('reconnecting').length >= 3, 'three refused attempts, each followed by a retry');
  for (const e of rec.of('connect_error')) {
    assert.is(e.status, 503);
    assert.is(e.code, 'too_many_connections');
  }
  assert.is(rec.of('error').length, 0);
  await first.close();
  assert.equal(await joining, { webhookId: id, room: `webhook:${id}`, last: null });
  assert.is(rec.of('connected').length, 1);
});

access.run();

const rate = withCleanup('rate limit');

rate('joins over HOOKY_WS_RATE_LIMIT are sent again after retryAfterMs and all complete, without a 1008 close', async (ctx) => {
  // A bucket of 2, refilled at 2 per second: of three joins sent at once, the third is refused.
  const server = await startServer({ HOOKY_WS_RATE_LIMIT: '2', HOOKY_WS_RATE_BURST: '2', HOOKY_MAX_ROOMS: '3' });
  ctx.cleanup.push(() => server.close());
  const ids = [await newWebhook(server.url), await newWebhook(server.url), await newWebhook(server.url)];
  const tap = tapped();
  const client = createClient(server.url, { WebSocket: tap.Tapped });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  await Promise.all(ids.map((id) => client.join(id)));
  const [limited] = rec.of('error');
  assert.is(limited!.code, 'RATE_LIMITED');
  assert.ok(typeof limited!.retryAfterMs === 'number' && limited!.retryAfterMs > 0, JSON.stringify(limited));
  assert.equal(
    tap.outbound.filter((f) => f.event === 'join').map((f) => f.data.webhookId),
    [...ids, ids[2]],
  );
  // The room is really joined: its requests arrive.
  const sent = await capture(server.url, ids[2]!);
  await until(() => rec.of('new-request').length === 1, 'the request');
  assert.is(rec.of('new-request')[0]!.id, sent);
  assert.is(rec.of('disconnect').length, 0);
  assert.is(rec.of('connected').length, 1);
});

rate.run();

// --- stalled links ---------------------------------------------------------------------------

/**
 * A TCP proxy whose current connections can be frozen: bytes stop flowing both ways and nothing
 * is closed, as when a NAT entry is dropped or a laptop sleeps. New connections pass as usual.
 */
async function freezableProxy(upstreamPort: number) {
  const pairs: { client: NetSocket; upstream: NetSocket; frozen: boolean; clientClosed: boolean }[] = [];
  const server: NetServer = createNetServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    const pair = { client, upstream, frozen: false, clientClosed: false };
    pairs.push(pair);
    client.on('data', (d) => pair.frozen || upstream.write(d));
    upstream.on('data', (d) => pair.frozen || client.write(d));
    client.on('close', () => {
      pair.clientClosed = true;
      if (!pair.frozen) upstream.destroy();
    });
    upstream.on('close', () => pair.frozen || client.destroy());
    // A reset on either side only ends the pair.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    pairs,
    freeze: () => pairs.forEach((p) => (p.frozen = true)),
    close: () =>
      new Promise<void>((r) => {
        for (const p of pairs) p.client.destroy(), p.upstream.destroy();
        server.close(() => r());
      }),
  };
}

const stalled = withCleanup('stalled link');

stalled('a link that stops answering is found by its missing pongs and replaced, without losing a request', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const proxy = await freezableProxy(server.server.port);
  ctx.cleanup.push(() => proxy.close());
  const client = createClient(`ws://127.0.0.1:${proxy.port}/ws`, { pingIntervalMs: 100, maxMissedPongs: 2, minDelayMs: 50 });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  const id = await newWebhook(server.url);
  await client.join(id);
  const sent = [await capture(server.url, id)];
  await until(() => rec.of('new-request').length === 1, 'the first request');

  proxy.freeze();
  const frozenAt = Date.now();
  sent.push(await capture(server.url, id)); // published into the dead link
  await until(() => rec.of('disconnect').length === 1, 'the dead link detected', 2000);
  const detectedIn = rec.log.find((l) => l.event === 'disconnect')!.at - frozenAt;
  // Pings every 100 ms, dead after 2 unanswered: found 200–300 ms after the last pong.
  assert.ok(detectedIn >= 100 && detectedIn <= 450, `detected in ${detectedIn} ms`);
  assert.match(rec.of('disconnect')[0]!.reason, 'no pong');
  await until(() => rec.of('connected').length === 2, 'a new connection');
  await until(() => proxy.pairs[0]!.clientClosed, 'the dead socket closed at once, not after a close timeout', 500);
  await until(() => rec.of('new-request').length === 2, 'the request sent into the dead link');
  sent.push(await capture(server.url, id));
  await until(() => rec.of('new-request').length === 3, 'a live request on the new link');
  await sleep(100);
  assert.equal(
    rec.of('new-request').map((r) => r.id),
    sent,
  );
  assert.is(proxy.pairs.length, 2);
});

stalled.run();

// --- the browser bundle ------------------------------------------------------------------------

const bundle = suite('browser bundle');

bundle('src/client bundles for the browser with protocol.ts as its only server-side import', async () => {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [new URL('../src/client/index.ts', import.meta.url).pathname],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  const ours = inputs.filter((i) => i.startsWith('src/'));
  assert.equal(ours.filter((i) => !i.startsWith('src/client/')), ['src/protocol.ts']);
  // `ws` resolves to its browser stub, which only runs where there is no native WebSocket.
  assert.ok(inputs.includes('node_modules/ws/browser.js'), inputs.join(', '));
  assert.not.match(result.outputFiles[0]!.text, /from ["']node:|require\(["']node:/);
});

bundle.run();
