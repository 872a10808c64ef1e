/**
 * The SDK's rooms: replay and resume against a scripted server, which produces on purpose the
 * orders of frames the real server produces only by chance.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRoom, endReplay, interrupt, receive, resumeFrom } from '../src/client/rooms.js';
import { withCleanup } from './support/suite.js';
import { HookyError, type CapturedRequest } from '../src/client/index.js';
import { joinedFrame, later, live, payload, replay, replayed, rid, scriptedClient, sleep, until } from './support/client.js';

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

const cursor = suite('room cursor');
const req = (n: number) => payload(n) as CapturedRequest;

cursor('the cursor moves only over contiguous delivery: live requests wait out a replay, an interrupted replay drops them', () => {
  const got: string[] = [];
  const deliver = (r: { id: string }) => got.push(r.id);
  const room = createRoom('w', rid(1));
  room.replaying = true;
  receive(room, req(5), false, deliver); // live, held
  receive(room, req(2), true, deliver);
  receive(room, req(2), true, deliver); // a duplicate
  assert.equal(got, [rid(2)]);
  assert.is(resumeFrom(room), rid(2));
  interrupt(room); // the link is gone: 5 is dropped, the next replay sends it again
  assert.is(resumeFrom(room), rid(2));
  room.replaying = true;
  receive(room, req(4), false, deliver);
  receive(room, req(3), false, deliver);
  receive(room, req(3), true, deliver);
  endReplay(room, deliver);
  assert.equal(got, [rid(2), rid(3), rid(4)]);
  assert.is(resumeFrom(room), rid(4));
});

cursor.run();
