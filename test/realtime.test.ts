import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createWebhook, startServer, uniqueId, withServer, type TestServer } from './support/server.js';
import { eventually, metric } from './support/observe.js';
import { joined, openClient, type TestClient } from './support/ws.js';
import { hardPayloadCeiling } from '../src/realtime.js';

const capture = (base: string, id: string, init: RequestInit & { path?: string } = {}) =>
  fetch(`${base}/h/${id}${init.path ?? ''}`, { method: 'POST', body: 'x', ...init });


// --- Requirement: Establish WebSocket connection (its refusals: upgrade.test.ts) ------------

const connect = withServer('websocket connection');

connect('client connects to /ws and is assigned a unique connection id', async (ctx) => {
  const a = await openClient(ctx.s.wsUrl);
  const b = await openClient(ctx.s.wsUrl);
  ctx.clients.push(a, b);
  assert.is(a.ws.protocol, 'hooky.v1');
  const [ca, cb] = [await a.next('connected'), await b.next('connected')];
  assert.type(ca.data.connectionId, 'string');
  assert.ok(ca.data.connectionId.length > 0);
  assert.is.not(ca.data.connectionId, cb.data.connectionId);
});

connect('connection established: the first frame is "connected" with the id and protocol', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl);
  ctx.clients.push(c);
  const first = await c.next('connected');
  assert.is(c.frames[0], first);
  assert.equal(Object.keys(first.data).sort(), ['connectionId', 'protocol']);
  assert.is(first.data.protocol, 'hooky.v1');
});

connect('hooky.v1 offered among other protocols is selected', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl, ['chat', 'hooky.v1']);
  ctx.clients.push(c);
  assert.is(c.ws.protocol, 'hooky.v1');
});

connect.run();

// --- Requirement: Join webhook room -------------------------------------------------------

const rooms = withServer('rooms');

rooms('join a valid webhook room: "joined" confirms room webhook:<id> and echoes ref', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const c = await openClient(ctx.s.wsUrl);
  ctx.clients.push(c);
  c.send({ event: 'join', data: { webhookId: id }, ref: 7 });
  const f = await c.next('joined');
  assert.equal(f, { event: 'joined', data: { webhookId: id, room: `webhook:${id}`, last: null }, ref: 7 });
});

rooms('joined carries the newest committed request id as a resume point', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  await capture(ctx.s.url, id);
  const newest = ((await (await capture(ctx.s.url, id)).json()) as { id: string }).id;
  const c = await joined(ctx.s.wsUrl, id);
  ctx.clients.push(c);
  assert.is(c.frames.find((f) => f.event === 'joined')!.data.last, newest);
  // Resuming from it replays only what came after.
  const later = ((await (await capture(ctx.s.url, id)).json()) as { id: string }).id;
  const r = await openClient(ctx.s.wsUrl);
  ctx.clients.push(r);
  r.send({ event: 'join', data: { webhookId: id, since: newest } });
  assert.is((await r.next('new-request')).data.id, later);
});

rooms('join abc-123 joins room "webhook:abc-123"', async (ctx) => {
  await fetch(`${ctx.s.url}/api/webhooks/abc-123`, { method: 'DELETE' });
  await createWebhook(ctx.s.url, { id: 'abc-123' });
  const c = await joined(ctx.s.wsUrl, 'abc-123');
  ctx.clients.push(c);
  assert.is(c.frames.find((f) => f.event === 'joined')!.data.room, 'webhook:abc-123');
  const res = await capture(ctx.s.url, 'abc-123');
  assert.is(res.status, 200);
  const got = await c.next('new-request');
  assert.is(got.data.webhookId, 'abc-123');
});

rooms('join a room for a webhook that does not exist: error "Webhook not found"', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl);
  ctx.clients.push(c);
  c.send({ event: 'join', data: { webhookId: uniqueId('missing') }, ref: 'j1' });
  const f = await c.next('error');
  assert.is(f.data.code, 'WEBHOOK_NOT_FOUND');
  assert.is(f.data.message, 'Webhook not found');
  assert.is(f.ref, 'j1');
  // The connection stays usable.
  c.send({ event: 'ping', ref: 2 });
  assert.is((await c.next('pong')).ref, 2);
});

rooms('leave a room: "left" confirms, and no further events arrive', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const c = await joined(ctx.s.wsUrl, id);
  ctx.clients.push(c);
  c.send({ event: 'leave', data: { webhookId: id }, ref: 'l' });
  assert.equal(await c.next('left'), { event: 'left', data: { webhookId: id, room: `webhook:${id}` }, ref: 'l' });
  assert.is((await capture(ctx.s.url, id)).status, 200);
  assert.equal(await c.collect('new-request', 300), []);
});

rooms('TOO_MANY_ROOMS past the per-connection limit', async () => {
  const s = await startServer({ HOOKY_MAX_ROOMS: '2' });
  try {
    const ids = await Promise.all([1, 2, 3].map(() => createWebhook(s.url)));
    const c = await openClient(s.wsUrl);
    for (const { id } of ids.slice(0, 2)) {
      c.send({ event: 'join', data: { webhookId: id } });
      await c.next('joined');
    }
    c.send({ event: 'join', data: { webhookId: ids[2]!.id } });
    assert.is((await c.next('error')).data.code, 'TOO_MANY_ROOMS');
    // Joining a room already joined is not a new room.
    c.send({ event: 'join', data: { webhookId: ids[0]!.id } });
    await c.next('joined');
    await c.close();
  } finally {
    await s.close();
  }
});

rooms.run();

// --- Requirement: Broadcast new requests --------------------------------------------------

const broadcast = withServer('broadcast');

broadcast('new request broadcast carries the complete payload', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const c = await joined(ctx.s.wsUrl, id);
  ctx.clients.push(c);
  const res = await fetch(`${ctx.s.url}/h/${id}/orders/42?x=1&tag=a&tag=b&empty=&sp=a+b`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'user-agent': 'Stripe/1.0', 'x-multi': 'one' },
    body: '{"amount":100,"note":"héllo"}',
  });
  assert.is(res.status, 200);
  const ack = (await res.json()) as { ok: boolean; id: string };
  const { data: p } = await c.next('new-request');
  assert.equal(Object.keys(p), ['id', 'webhookId', 'method', 'path', 'headers', 'queryParams', 'rawQuery', 'body', 'bodyEncoding', 'size', 'timestamp', 'sourceIp', 'userAgent']);
  assert.is(p.id, ack.id);
  assert.is(p.webhookId, id);
  assert.is(p.method, 'PUT');
  assert.is(p.path, '/orders/42');
  assert.is(p.headers['content-type'], 'application/json');
  assert.is(p.headers['x-multi'], 'one');
  assert.is(p.headers['user-agent'], 'Stripe/1.0');
  assert.equal(p.queryParams, { x: '1', tag: ['a', 'b'], empty: '', sp: 'a b' });
  assert.is(p.body, '{"amount":100,"note":"héllo"}');
  assert.is(p.bodyEncoding, 'utf8');
  assert.is(p.size, Buffer.byteLength('{"amount":100,"note":"héllo"}'));
  assert.match(p.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(p.timestamp) - Date.now()) < 10_000);
  assert.is(p.sourceIp, '127.0.0.1');
  assert.is(p.userAgent, 'Stripe/1.0');
  // REST returns the very same object.
  const stored = await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${p.id}`)).json();
  assert.equal(stored, p);
});

broadcast('binary body is base64 and byte-exact; empty body is null; no user agent is null', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const c = await joined(ctx.s.wsUrl, id);
  ctx.clients.push(c);
  const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41, 0xc3]);
  const { request } = await import('node:http');
  // fetch always sends a user agent; node:http sends none unless told to.
  const post = (body: Buffer | null, method = 'POST') =>
    new Promise<number>((resolve, reject) => {
      const req = request(`${ctx.s.url}/h/${id}`, { method }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end(body ?? undefined);
    });
  assert.is(await post(bytes), 200);
  const bin = (await c.next('new-request')).data;
  assert.is(bin.bodyEncoding, 'base64');
  assert.ok(Buffer.from(bin.body, 'base64').equals(bytes));
  assert.is(bin.size, 6);
  assert.is(bin.userAgent, null);
  assert.is(bin.headers['user-agent'], undefined);
  assert.is(await post(null, 'GET'), 200);
  const empty = (await c.next('new-request')).data;
  assert.is(empty.body, null);
  assert.is(empty.size, 0);
  assert.is(empty.method, 'GET');
  assert.is(empty.path, '/');
  assert.equal(empty.queryParams, {});
});

broadcast('broadcast to multiple clients: three clients in the room all receive it', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const cs = await Promise.all([1, 2, 3].map(() => joined(ctx.s.wsUrl, id)));
  ctx.clients.push(...cs);
  const ack = (await (await capture(ctx.s.url, id)).json()) as { id: string };
  const got = await Promise.all(cs.map((c) => c.next('new-request')));
  for (const f of got) assert.is(f.data.id, ack.id);
});

broadcast('no broadcast to other rooms: only the client in webhook:abc receives it', async (ctx) => {
  const a = await createWebhook(ctx.s.url);
  const b = await createWebhook(ctx.s.url);
  const ca = await joined(ctx.s.wsUrl, a.id);
  const cb = await joined(ctx.s.wsUrl, b.id);
  const none = await openClient(ctx.s.wsUrl);
  ctx.clients.push(ca, cb, none);
  await capture(ctx.s.url, a.id);
  assert.is((await ca.next('new-request')).data.webhookId, a.id);
  assert.equal(await cb.collect('new-request', 300), []);
  assert.equal(await none.collect('new-request', 0), []);
});

broadcast.run();

// --- Requirement: Handle client disconnections ------------------------------------------

const disconnects = withServer('disconnections');

disconnects('client disconnects: it leaves every room and nothing of it is kept', async (ctx) => {
  const before = await metric(ctx.s.url, 'hooky_websocket_connections');
  const roomsBefore = await metric(ctx.s.url, 'hooky_room_memberships');
  const hooks = await Promise.all([1, 2].map(() => createWebhook(ctx.s.url)));
  const c = await openClient(ctx.s.wsUrl);
  await c.next('connected');
  for (const { id } of hooks) {
    c.send({ event: 'join', data: { webhookId: id } });
    await c.next('joined');
  }
  assert.is(await metric(ctx.s.url, 'hooky_websocket_connections'), before + 1);
  assert.is(await metric(ctx.s.url, 'hooky_room_memberships'), roomsBefore + 2);
  await c.close();
  await eventually(async () => (await metric(ctx.s.url, 'hooky_websocket_connections')) === before);
  assert.is(await metric(ctx.s.url, 'hooky_room_memberships'), roomsBefore);
  // A capture now reaches no one and is still stored.
  assert.is((await capture(ctx.s.url, hooks[0]!.id)).status, 200);
  assert.is(await metric(ctx.s.url, 'hooky_publishes_total'), await metric(ctx.s.url, 'hooky_publishes_total'));
});

disconnects('server-initiated disconnect: "disconnect" with the reason, then close 1001', async () => {
  const s = await startServer();
  const { id } = await createWebhook(s.url);
  const c = await joined(s.wsUrl, id);
  const closing = s.close();
  const f = await c.next('disconnect');
  assert.equal(f.data, { reason: 'server shutting down' });
  const { code, reason } = await c.closed;
  assert.is(code, 1001);
  assert.is(reason, 'server shutting down');
  await closing;
});

disconnects.run();

// --- Requirement: Handle concurrent connections -----------------------------------------

const concurrent = withServer('concurrent connections');

concurrent('100 clients connect simultaneously, each in its own room, each gets exactly its events', async (ctx) => {
  const hooks = await Promise.all(Array.from({ length: 100 }, () => createWebhook(ctx.s.url)));
  const cs = await Promise.all(hooks.map(({ id }) => joined(ctx.s.wsUrl, id)));
  ctx.clients.push(...cs);
  const ids = new Set(cs.map((c) => c.frames[0]!.data.connectionId));
  assert.is(ids.size, 100);
  const acks = await Promise.all(hooks.map(async ({ id }) => ((await (await capture(ctx.s.url, id)).json()) as { id: string }).id));
  const got = await Promise.all(cs.map((c) => c.next('new-request')));
  got.forEach((f, i) => {
    assert.is(f.data.webhookId, hooks[i]!.id);
    assert.is(f.data.id, acks[i]);
  });
  const extra = await Promise.all(cs.map((c) => c.collect('new-request', 0)));
  assert.is(extra.flat().length, 0);
});

concurrent.run();

// --- Protocol details: replay, bad frames, limits ----------------------------------------

const protocol = withServer('protocol', { HOOKY_MAX_WS_PAYLOAD: '1024' });

protocol('join with since replays the requests committed after that id, oldest first, with the ref', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  // Past nine rows, where an order by the rows' numbers as text would go astray.
  const acks: string[] = [];
  for (let i = 0; i < 14; i++) acks.push(((await (await capture(ctx.s.url, id, { body: `n${i}` })).json()) as { id: string }).id);
  const c = await openClient(ctx.s.wsUrl);
  ctx.clients.push(c);
  c.send({ event: 'join', data: { webhookId: id, since: acks[1] }, ref: 'r' });
  await c.next('joined');
  const replayed = [];
  for (let i = 2; i < 14; i++) replayed.push(await c.next('new-request'));
  assert.equal(replayed.map((f) => f.data.id), acks.slice(2));
  assert.equal(replayed.map((f) => f.data.body), acks.slice(2).map((_, i) => `n${i + 2}`));
  for (const f of replayed) assert.is(f.ref, 'r');
  const done = await c.next('replayed');
  assert.equal(done.data, { webhookId: id, room: `webhook:${id}`, count: 12, truncated: false, last: acks[13] });
  // Live events follow without a ref.
  await capture(ctx.s.url, id);
  assert.is((await c.next('new-request')).ref, undefined);
});

protocol('replay is capped at HOOKY_REPLAY_LIMIT and says so', async () => {
  const s = await startServer({ HOOKY_REPLAY_LIMIT: '11' });
  try {
    const { id } = await createWebhook(s.url);
    const first = ((await (await capture(s.url, id)).json()) as { id: string }).id;
    const acks: string[] = [];
    for (let i = 0; i < 13; i++) acks.push(((await (await capture(s.url, id)).json()) as { id: string }).id);
    const c = await openClient(s.wsUrl);
    c.send({ event: 'join', data: { webhookId: id, since: first } });
    await c.next('joined');
    const r = await c.next('replayed');
    assert.is(r.data.count, 11);
    assert.is(r.data.truncated, true);
    const events = c.frames.filter((f) => f.event === 'new-request');
    assert.equal(events.map((f) => f.data.id), acks.slice(0, 11), 'the oldest eleven, in order');
    assert.is(r.data.last, acks[10]);
    await c.close();
  } finally {
    await s.close();
  }
});

protocol('bad frames get error events and the connection stays usable', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl);
  ctx.clients.push(c);
  const cases: [unknown, string][] = [
    ['not json', 'BAD_MESSAGE'],
    ['[1,2]', 'BAD_MESSAGE'],
    ['"join"', 'BAD_MESSAGE'],
    [{ event: 42 }, 'BAD_MESSAGE'],
    [{ event: 'dance' }, 'UNKNOWN_EVENT'],
    [{ event: 'join' }, 'BAD_MESSAGE'],
    [{ event: 'join', data: { webhookId: 'has spaces' } }, 'BAD_MESSAGE'],
    [{ event: 'join', data: { webhookId: 'x'.repeat(65) } }, 'BAD_MESSAGE'],
    [{ event: 'join', data: { webhookId: 'ok', since: 'yesterday' } }, 'BAD_MESSAGE'],
    [{ event: 'leave', data: {} }, 'BAD_MESSAGE'],
    [{ event: 'join', data: { webhookId: 'ok' }, ref: { nested: true } }, 'BAD_MESSAGE'],
    [{ event: '__proto__' }, 'UNKNOWN_EVENT'],
  ];
  for (const [frame, code] of cases) {
    c.send(frame);
    const f = await c.next('error');
    assert.is(f.data.code, code, JSON.stringify(frame));
    assert.type(f.data.message, 'string');
  }
  c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.is((await c.next('error')).data.code, 'BAD_MESSAGE');
  c.send({ event: 'dance', ref: 'echo' });
  assert.is((await c.next('error')).ref, 'echo');
  const { id } = await createWebhook(ctx.s.url);
  c.send({ event: 'join', data: { webhookId: id } });
  assert.is((await c.next('joined')).data.webhookId, id);
});

protocol('a frame over the maximum payload closes the connection with 1009, after a disconnect saying why', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl);
  await c.next('connected');
  c.send(JSON.stringify({ event: 'ping', data: 'x'.repeat(2000) }));
  const { code } = await c.closed;
  assert.is(code, 1009);
  assert.equal(c.frames.at(-1), { event: 'disconnect', data: { reason: 'message too big' } });
});

protocol('a frame just under uWS\'s ceiling still gets 1009; one over it is cut without a close frame (1006), as documented, and the server goes on', async (ctx) => {
  // HOOKY_MAX_WS_PAYLOAD=1024 here: the ceiling is max(4 × 1 KiB, 1 MiB) = 1 MiB.
  const under = await openClient(ctx.s.wsUrl);
  await under.next('connected');
  under.ws.send('x'.repeat(hardPayloadCeiling(1024)));
  assert.is((await under.closed).code, 1009);
  const over = await openClient(ctx.s.wsUrl);
  await over.next('connected');
  over.ws.send('x'.repeat(hardPayloadCeiling(1024) + 1));
  assert.is((await over.closed).code, 1006);
  const next = await openClient(ctx.s.wsUrl);
  ctx.clients.push(next);
  await next.next('connected');
});

protocol('a deleted webhook: its room gets WEBHOOK_DELETED and is emptied', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const c = await joined(ctx.s.wsUrl, id);
  ctx.clients.push(c);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`, { method: 'DELETE' })).status, 204);
  const f = await c.next('error');
  assert.is(f.data.code, 'WEBHOOK_DELETED');
  assert.is(f.data.webhookId, id);
  // Re-created under the same id, the old members are no longer in its room.
  await createWebhook(ctx.s.url, { id });
  await capture(ctx.s.url, id);
  assert.equal(await c.collect('new-request', 300), []);
});

protocol.run();

// --- Limits: message rate (the connection limit is in upgrade.test.ts) ----------------------------------------------------

const limits = withServer('limits', { HOOKY_WS_RATE_LIMIT: '1', HOOKY_WS_RATE_BURST: '5', HOOKY_MAX_ROOMS: '10' });

limits('a client over its message rate gets RATE_LIMITED; one that keeps going is closed with 1008', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl);
  await c.next('connected');
  // The burst (5) passes at once.
  for (let i = 0; i < 5; i++) c.send({ event: 'ping', ref: i });
  for (let i = 0; i < 5; i++) assert.is((await c.next('pong')).ref, i);
  // The 6th is refused, unread: no ref, and when to try again (1 frame per second).
  c.send({ event: 'ping', ref: 'too-soon' });
  const limited = await c.next('error');
  assert.is(limited.data.code, 'RATE_LIMITED');
  assert.is(limited.ref, undefined);
  assert.ok(limited.data.retryAfterMs > 0 && limited.data.retryAfterMs <= 1000, String(limited.data.retryAfterMs));
  // A token is back after a second: the connection is usable again.
  await new Promise((r) => setTimeout(r, 1100));
  c.send({ event: 'ping', ref: 'later' });
  assert.is((await c.next('pong')).ref, 'later');
  // Going on regardless: refused frames past the burst (5) within 10 s close the connection.
  for (let i = 0; i < 20; i++) c.send({ event: 'ping' });
  const { code, reason } = await c.closed;
  assert.is(code, 1008);
  assert.is(reason, 'rate limit exceeded');
  assert.is(c.frames.filter((f) => f.data?.code === 'RATE_LIMITED').length, 5, 'told five times, then closed');
  assert.equal(c.frames.at(-1), { event: 'disconnect', data: { reason: 'rate limit exceeded' } }, 'told why before the close');
  assert.is(await metric(ctx.s.url, 'hooky_websocket_rate_limit_closes_total'), 1);
  assert.is(await metric(ctx.s.url, 'hooky_websocket_errors_total{code="RATE_LIMITED"}'), 5);
});

limits.run();
