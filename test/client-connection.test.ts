/** The SDK's connection loop: backoff, reconnects, connect errors, refusals and dead links. */
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, connect, type Server as NetServer, type Socket as NetSocket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WS from 'ws';
import { http } from './support/http.js';
import { figures } from './support/observe.js';
import { freePort, withCleanup } from './support/suite.js';
import { backoffDelay, createClient, HookyError } from '../src/client/index.js';
import { startServer } from './support/server.js';
import { capture, later, newWebhook, record, scriptedClient, sleep, tapped, until } from './support/client.js';

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

const attempts = withCleanup('attempt count');

attempts('attempts count up across connections shorter than stableAfterMs; one that lasts it starts the count again', async (ctx) => {
  const { server, rec } = scriptedClient(ctx, { stableAfterMs: 100 });
  const s1 = await server.socket(1);
  s1.accept();
  s1.drop(); // open, but not for stableAfterMs
  const s2 = await server.socket(2);
  s2.drop(); // never opened
  const s3 = await server.socket(3);
  s3.accept();
  await sleep(250); // past stableAfterMs
  s3.drop();
  await server.socket(4);
  assert.equal(
    rec.of('reconnecting').map((r) => r.attempt),
    [1, 2, 1],
  );
});

attempts.run();

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
    // 503 is worth retrying: the next attempt is announced (a timer turn after connect_error,
    // when reconnecting-websocket asks for the next URL), nothing is rejected.
    await until(() => rec.of('reconnecting').length > 0, 'the next attempt announced');
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
