import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createMetrics } from '../src/metrics.js';
import { createRooms } from '../src/rooms.js';
import { newSession, type Socket } from '../src/session.js';
import type { CapturedRow } from '../src/store.js';

/** A socket as rooms.ts sees it: its topics, its send buffer, the frames sent to it directly. */
function fakeSocket(buffered = 0) {
  const session = newSession({ tokens: 1, filledAt: 0, refused: 0, refusedSince: 0 });
  const topics = new Set<string>();
  const frames: string[] = [];
  const fake = {
    buffered,
    topics,
    frames,
    getUserData: () => session,
    subscribe: (t: string) => topics.add(t),
    unsubscribe: (t: string) => topics.delete(t),
    getBufferedAmount: () => fake.buffered,
    send: (f: string) => (frames.push(f), 1),
    cork: (cb: () => void) => cb(),
  };
  return { ws: fake as unknown as Socket, fake, session };
}

/** Rooms over a fake app and relay that record what they are told. */
function fixture(maxBuffer = 1024) {
  const metrics = createMetrics();
  const published: { room: string; frame: string }[] = [];
  const watched: string[] = [];
  const unwatched: string[] = [];
  const errors: { code: string; extra: unknown }[] = [];
  let watchFails = false;
  const rooms = createRooms(
    { publish: (room: string, frame: string) => (published.push({ room, frame }), true) } as never,
    { maxBuffer },
    {
      relay: {
        watch: async (id) => {
          watched.push(id);
          if (watchFails) throw new Error('no');
          return `last-of-${id}`;
        },
        unwatch: (id) => void unwatched.push(id),
      },
      metrics,
      sendError: (_ws, code, _ref, extra) => void errors.push({ code, extra }),
    },
  );
  return { rooms, metrics, published, watched, unwatched, errors, failWatch: () => (watchFails = true) };
}

const row = (webhookId: string, id: string, json = `{"id":"${id}"}`): CapturedRow => ({ id, webhookId, json });
const nextTurn = () => new Promise((r) => setImmediate(r));

const membership = suite('rooms: membership');

membership('join subscribes the socket to webhook:<id> and resolves with the relay\'s resume point', async () => {
  const f = fixture();
  const { ws, fake, session } = fakeSocket();
  assert.is(await f.rooms.join(ws, 'a'), 'last-of-a');
  assert.equal([...fake.topics], ['webhook:a']);
  assert.equal([...session.rooms], ['webhook:a']);
  assert.is(f.metrics.joinedRooms.value, 1);
  // Joining again is no new membership, but the relay is asked again for the resume point.
  assert.is(await f.rooms.join(ws, 'a'), 'last-of-a');
  assert.is(f.metrics.joinedRooms.value, 1);
  assert.equal(f.watched, ['a', 'a']);
  f.metrics.close();
});

membership('the relay unwatches a room only when its last member leaves', async () => {
  const f = fixture();
  const one = fakeSocket();
  const two = fakeSocket();
  await f.rooms.join(one.ws, 'a');
  await f.rooms.join(two.ws, 'a');
  f.rooms.leave(one.ws, 'a');
  assert.equal(f.unwatched, []);
  assert.equal([...one.fake.topics], []);
  f.rooms.leave(two.ws, 'a');
  assert.equal(f.unwatched, ['a']);
  // Leaving a room it is not in changes nothing.
  f.rooms.leave(two.ws, 'a');
  assert.equal(f.unwatched, ['a']);
  assert.is(f.metrics.joinedRooms.value, 0);
  f.metrics.close();
});

membership('a join the relay cannot serve leaves the room again and rejects', async () => {
  const f = fixture();
  const { ws, fake, session } = fakeSocket();
  f.failWatch();
  await f.rooms.join(ws, 'a').then(
    () => assert.unreachable('resolved'),
    (err: Error) => assert.is(err.message, 'no'),
  );
  assert.equal([...fake.topics], []);
  assert.is(session.rooms.size, 0);
  assert.is(f.metrics.joinedRooms.value, 0);
  assert.equal(f.unwatched, ['a']);
  f.metrics.close();
});

membership('a dropped socket leaves every room it was in; rooms left empty are unwatched', async () => {
  const f = fixture();
  const gone = fakeSocket();
  const stays = fakeSocket();
  await f.rooms.join(gone.ws, 'a');
  await f.rooms.join(gone.ws, 'b');
  await f.rooms.join(stays.ws, 'b');
  f.rooms.dropped(gone.ws);
  assert.is(gone.session.rooms.size, 0);
  assert.equal(f.unwatched, ['a']);
  assert.is(f.metrics.joinedRooms.value, 1);
  f.metrics.close();
});

membership.run();

const publishing = suite('rooms: publish');

publishing('each row goes to its room as one new-request frame; rooms without members here get nothing', async () => {
  const f = fixture();
  await f.rooms.join(fakeSocket().ws, 'a');
  f.rooms.publish([row('a', 'r1'), row('nobody', 'r2'), row('a', 'r3')]);
  assert.equal(
    f.published.map((p) => [p.room, JSON.parse(p.frame)]),
    [
      ['webhook:a', { event: 'new-request', data: { id: 'r1' } }],
      ['webhook:a', { event: 'new-request', data: { id: 'r3' } }],
    ],
  );
  assert.is(f.metrics.publishes.value, 2);
  f.metrics.close();
});

publishing('a member whose buffer with the bytes just published passes maxBuffer is flagged over the limit', async () => {
  const f = fixture(1000);
  const near = fakeSocket(900);
  const idle = fakeSocket(0);
  await f.rooms.join(near.ws, 'a');
  await f.rooms.join(idle.ws, 'a');
  f.rooms.publish([row('a', 'r1', `{"pad":"${'x'.repeat(200)}"}`)]);
  assert.is(near.session.overLimit, true);
  assert.is(idle.session.overLimit, false);
  assert.is(near.session.pending, 0);
  f.metrics.close();
});

publishing('bytes published through several rooms add up for a member of them all', async () => {
  const f = fixture(1000);
  const both = fakeSocket(0);
  await f.rooms.join(both.ws, 'a');
  await f.rooms.join(both.ws, 'b');
  const pad = `{"pad":"${'x'.repeat(550)}"}`;
  f.rooms.publish([row('a', 'r1', pad)]);
  assert.is(both.session.overLimit, false);
  f.rooms.publish([row('a', 'r2', pad), row('b', 'r3', pad)]);
  assert.is(both.session.overLimit, true);
  f.metrics.close();
});

publishing('a flagged member still open with its buffer under the limit on the next turn is cleared', async () => {
  const f = fixture(1000);
  const kept = fakeSocket(900);
  const closed = fakeSocket(900);
  await f.rooms.join(kept.ws, 'a');
  await f.rooms.join(closed.ws, 'a');
  f.rooms.publish([row('a', 'r1', `{"pad":"${'x'.repeat(200)}"}`)]);
  assert.ok(kept.session.overLimit && closed.session.overLimit);
  // The kernel took the bytes of one; the other was closed by uWS.
  kept.fake.buffered = 0;
  closed.session.closed = true;
  await nextTurn();
  assert.is(kept.session.overLimit, false);
  assert.is(closed.session.overLimit, true);
  f.metrics.close();
});

publishing.run();

const deleted = suite('rooms: webhookDeleted');

deleted('every member is told WEBHOOK_DELETED, then the room is emptied and unwatched', async () => {
  const f = fixture();
  const members = [fakeSocket(), fakeSocket()];
  const other = fakeSocket();
  for (const m of members) await f.rooms.join(m.ws, 'a');
  await f.rooms.join(other.ws, 'b');
  f.rooms.webhookDeleted('a');
  assert.equal(f.errors, [
    { code: 'WEBHOOK_DELETED', extra: { webhookId: 'a' } },
    { code: 'WEBHOOK_DELETED', extra: { webhookId: 'a' } },
  ]);
  for (const m of members) {
    assert.equal([...m.fake.topics], []);
    assert.is(m.session.rooms.size, 0);
  }
  assert.equal(f.unwatched, ['a']);
  assert.is(f.metrics.joinedRooms.value, 1);
  // Nothing is published to it any more.
  f.rooms.publish([row('a', 'r1')]);
  assert.equal(f.published, []);
  f.metrics.close();
});

deleted.run();
