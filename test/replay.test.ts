import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createBudget } from '../src/budget.js';
import { createMetrics } from '../src/metrics.js';
import { createReplay, replayLowWater } from '../src/replay.js';
import { createSender, newSession, type Socket } from '../src/session.js';
import type { Cursor, Store } from '../src/store.js';

/** One webhook's committed requests, in commit order, each `bytes` long; counts the page reads. */
function fakeStore(n: number, bytes = 100) {
  const rows = Array.from({ length: n }, (_, i) => ({ id: `r${String(i).padStart(3, '0')}`, position: i + 1, json: `{"n":${i}}`, bytes }));
  const pages: Cursor[] = [];
  const store = {
    async cursorOf(_w: string, id: string): Promise<Cursor> {
      return { position: rows.find((r) => r.id === id)?.position ?? 0, id };
    },
    async pageAfter(_w: string, after: Cursor, limit: number, maxBytes: number) {
      pages.push(after);
      const rest = rows.filter((r) => r.position > after.position || (r.position === after.position && r.id > after.id));
      const page: typeof rows = [];
      let total = 0;
      for (const r of rest) {
        if (page.length === limit || (page.length > 0 && total + r.bytes > maxBytes)) break;
        page.push(r);
        total += r.bytes;
      }
      const last = page.at(-1);
      return {
        ids: page.map((r) => r.id),
        positions: page.map((r) => r.position),
        bytes: total,
        more: rest.length > page.length,
        last: last === undefined ? undefined : { position: last.position, id: last.id },
      };
    },
    async payloadsOf(_w: string, ids: readonly string[]) {
      return ids.map((id) => rows.find((r) => r.id === id)!.json);
    },
  } as unknown as Store;
  return { store, rows, pages };
}

/** A socket that records every frame sent to it; its send buffer is what the test sets. */
function fakeSocket() {
  const session = newSession({ tokens: 1, filledAt: 0, refused: 0, refusedSince: 0 });
  // A member of the room it replays, as a join makes it before the replay starts.
  session.rooms.add('webhook:w');
  const frames: { event: string; data: any; ref?: unknown }[] = [];
  const fake = {
    buffered: 0,
    getUserData: () => session,
    getBufferedAmount: () => fake.buffered,
    send: (f: string) => (frames.push(JSON.parse(f)), 1),
    cork: (cb: () => void) => cb(),
  };
  return { ws: fake as unknown as Socket, fake, session, frames };
}

function fixture(store: Store, opts: { replayLimit?: number; maxPageBytes?: number; maxReadBytes?: number } = {}) {
  const metrics = createMetrics();
  const reads = createBudget(opts.maxReadBytes ?? 1 << 20);
  const sender = createSender(metrics);
  const replays = createReplay({ replayLimit: opts.replayLimit ?? 1000, maxPageBytes: opts.maxPageBytes ?? 250 }, { store, reads, metrics, ...sender });
  return { replays, reads, metrics };
}

const settle = () => new Promise((r) => setTimeout(r, 10));
const ids = (frames: { event: string; data: any }[]) => frames.filter((f) => f.event === 'new-request').map((f) => f.data.n as number);

const paging = suite('replay: pages');

paging('what came after since is sent oldest first with the join\'s ref, page by page, then "replayed"', async () => {
  const { store, rows, pages } = fakeStore(10);
  const f = fixture(store, { maxPageBytes: 250 });
  const { ws, frames } = fakeSocket();
  await f.replays.replay(ws, 'w', 'webhook:w', rows[2]!.id, 'r');
  assert.equal(ids(frames), [3, 4, 5, 6, 7, 8, 9]);
  for (const frame of frames) assert.is(frame.ref, 'r');
  // 250 bytes a page of 100-byte rows: two rows a page, four pages.
  assert.is(pages.length, 4);
  assert.equal(frames.at(-1), { event: 'replayed', data: { webhookId: 'w', room: 'webhook:w', count: 7, truncated: false, last: rows[9]!.id }, ref: 'r' });
  assert.is(f.reads.held, 0);
  f.metrics.close();
});

paging('a replay stops at replayLimit and says it was truncated', async () => {
  const { store, rows } = fakeStore(10);
  const f = fixture(store, { replayLimit: 3 });
  const { ws, frames } = fakeSocket();
  await f.replays.replay(ws, 'w', 'webhook:w', rows[0]!.id, 1);
  assert.equal(ids(frames), [1, 2, 3]);
  assert.equal(frames.at(-1)!.data, { webhookId: 'w', room: 'webhook:w', count: 3, truncated: true, last: rows[3]!.id });
  f.metrics.close();
});

paging.run();

const budget = suite('replay: the read budget');

budget('a page the budget refuses stops the replay with OVERLOADED and the last id sent', async () => {
  const { store, rows } = fakeStore(4);
  const f = fixture(store, { maxReadBytes: 300 });
  const other = f.reads.hold();
  other.take(150);
  const { ws, frames } = fakeSocket();
  await f.replays.replay(ws, 'w', 'webhook:w', rows[0]!.id, 'x');
  assert.equal(frames, [
    { event: 'error', data: { code: 'OVERLOADED', message: frames[0]!.data.message, webhookId: 'w', last: rows[0]!.id, retryAfterMs: 1000 }, ref: 'x' },
  ]);
  assert.is(f.metrics.readRefusals.value, 1);
  assert.is(f.reads.held, 150);
  other.release();
  f.metrics.close();
});

budget.run();

const pacing = suite('replay: pacing by drain');

pacing('the next page waits until the send buffer is down to the low water mark', async () => {
  const { store, rows } = fakeStore(6);
  const f = fixture(store, { maxPageBytes: 200 });
  const { ws, fake, frames } = fakeSocket();
  fake.buffered = replayLowWater + 1;
  const done = f.replays.replay(ws, 'w', 'webhook:w', rows[0]!.id, undefined);
  await settle();
  assert.equal(ids(frames), [1, 2]);
  // The page waiting to be drained is still held from the budget.
  assert.is(f.reads.held, 200);
  // A drain above the mark is not enough.
  f.replays.drain(ws);
  await settle();
  assert.equal(ids(frames), [1, 2]);
  fake.buffered = replayLowWater;
  f.replays.drain(ws);
  // The next page fills the buffer again before it is sent.
  fake.buffered = replayLowWater + 1;
  await settle();
  assert.equal(ids(frames), [1, 2, 3, 4]);
  fake.buffered = 0;
  f.replays.drain(ws);
  await done;
  assert.equal(ids(frames), [1, 2, 3, 4, 5]);
  assert.is(frames.at(-1)!.event, 'replayed');
  f.metrics.close();
});

pacing('a socket closed while its replay waits gives the page back and is sent nothing more', async () => {
  const { store, rows } = fakeStore(6);
  const f = fixture(store, { maxPageBytes: 200 });
  const { ws, fake, session, frames } = fakeSocket();
  fake.buffered = replayLowWater + 1;
  const done = f.replays.replay(ws, 'w', 'webhook:w', rows[0]!.id, undefined);
  await settle();
  assert.is(f.reads.held, 200);
  session.closed = true;
  f.replays.closed(ws);
  await done;
  assert.is(f.reads.held, 0);
  assert.equal(frames.map((fr) => fr.event), ['new-request', 'new-request']);
  f.metrics.close();
});

pacing('a socket that leaves the room while its replay waits is sent nothing more of it, and no "replayed"', async () => {
  const { store, rows } = fakeStore(6);
  const f = fixture(store, { maxPageBytes: 200 });
  const { ws, fake, session, frames } = fakeSocket();
  fake.buffered = replayLowWater + 1;
  const done = f.replays.replay(ws, 'w', 'webhook:w', rows[0]!.id, 'j');
  await settle();
  assert.equal(ids(frames), [1, 2]);
  session.rooms.delete('webhook:w');
  fake.buffered = 0;
  f.replays.drain(ws);
  await done;
  assert.equal(ids(frames), [1, 2]);
  assert.is(frames.length, 2);
  assert.is(f.reads.held, 0);
  f.metrics.close();
});

pacing('the replays of one connection run one after the other', async () => {
  const { store, rows } = fakeStore(4);
  const f = fixture(store, { maxPageBytes: 1000 });
  const { ws, fake, frames } = fakeSocket();
  fake.buffered = replayLowWater + 1;
  const first = f.replays.replay(ws, 'w', 'webhook:w', rows[1]!.id, 'a');
  const second = f.replays.replay(ws, 'w', 'webhook:w', rows[2]!.id, 'b');
  await settle();
  // The first waits for the drain; the second has not started.
  assert.equal(frames.map((fr) => fr.ref), ['a', 'a']);
  fake.buffered = 0;
  f.replays.drain(ws);
  await Promise.all([first, second]);
  assert.equal(frames.map((fr) => `${fr.event}:${fr.ref}`), ['new-request:a', 'new-request:a', 'replayed:a', 'new-request:b', 'replayed:b']);
  f.metrics.close();
});

pacing.run();
