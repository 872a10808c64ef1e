import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { createRelay } from '../src/relay.js';
import type { Cursor, CapturedRow, Store, StoredRow } from '../src/store.js';

/** A store holding one webhook's committed batches in memory; counts the reads. */
function fakeStore() {
  const batches: { position: number; rows: CapturedRow[] }[] = [];
  const reads: Cursor[] = [];
  // When the webhook was created: a new value is the webhook deleted and created again.
  let created = 'first';
  const store = {
    async standing() {
      const last = batches.at(-1);
      return { created, latest: last ? { position: last.position, id: last.rows.at(-1)!.id } : null };
    },
    async requestsAfter(_w: string, after: Cursor, limit: number) {
      reads.push(after);
      const rows: StoredRow[] = batches.flatMap((b) =>
        b.rows.filter((r) => b.position > after.position || (b.position === after.position && r.id > after.id)).map((r) => ({ id: r.id, position: b.position, json: r.json })),
      );
      return { rows: rows.slice(0, limit), truncated: rows.length > limit };
    },
    async positions() {
      return new Map([['w', { position: batches.at(-1)?.position ?? 0, created }]]);
    },
  } as unknown as Store;
  /** The webhook deleted and created again: its positions start over. */
  const recreate = () => {
    batches.length = 0;
    created = 'second';
  };
  /** Commits a batch of these ids at the next position and returns it. */
  const commit = (...ids: string[]) => {
    const b = { position: batches.length + 1, rows: ids.map((id) => ({ id, webhookId: 'w', json: `{"id":"${id}"}` })) };
    batches.push(b);
    return b;
  };
  return { store, commit, reads, recreate };
}

function relayOver(store: Store, checkIntervalMs = 60_000, holdGraceMs = 0) {
  const published: string[] = [];
  const deleted: string[] = [];
  const relay = createRelay(
    { fillLimit: 2, fillMaxBytes: 1 << 20, checkIntervalMs, holdGraceMs },
    { store, log: createLogger('silent'), metrics: createMetrics(), publish: (rows) => published.push(...rows.map((r) => r.id)), deleted: (id) => deleted.push(id) },
  );
  return { relay, published, deleted };
}

const settle = () => new Promise((r) => setTimeout(r, 10));
const test = suite('relay');

test('a batch committed here at the next position is published at once, without reading Postgres', async () => {
  const { store, commit, reads } = fakeStore();
  commit('a');
  const { relay, published } = relayOver(store);
  assert.is(await relay.watch('w'), 'a');
  const b = commit('b', 'c');
  relay.committed(b.rows, new Map([['w', b.position]]));
  assert.equal(published, ['b', 'c']);
  assert.is(reads.length, 0);
  relay.close();
});

test('a batch past a gap is held until the gap is read from Postgres, then both go out in commit order', async () => {
  const { store, commit } = fakeStore();
  const { relay, published } = relayOver(store);
  assert.is(await relay.watch('w'), null);
  commit('x1', 'x2', 'x3'); // another instance's batch, not announced (yet)
  const mine = commit('m');
  relay.committed(mine.rows, new Map([['w', mine.position]]));
  assert.equal(published, [], 'held');
  await settle();
  assert.equal(published, ['x1', 'x2', 'x3', 'm'], 'the gap (read in pages of 2) first, then the held batch, once each');
  relay.close();
});

test('with a hold grace, a batch past a gap waits for the batch before it to arrive with its rows; only one that does not come is read', async () => {
  const { store, commit, reads } = fakeStore();
  const { relay, published } = relayOver(store, 60_000, 40);
  assert.is(await relay.watch('w'), null);
  const theirs = commit('x'); // another worker's, on its way with its rows
  const mine = commit('m');
  relay.committed(mine.rows, new Map([['w', mine.position]]));
  await settle();
  assert.equal(published, [], 'held, and not read yet');
  relay.committed(theirs.rows, new Map([['w', theirs.position]]));
  await settle();
  assert.equal(published, ['x', 'm'], 'both in commit order as soon as the gap closed');
  commit('y'); // never arrives with its rows
  const next = commit('n');
  relay.committed(next.rows, new Map([['w', next.position]]));
  await settle();
  assert.equal(published, ['x', 'm']);
  assert.is(reads.length, 0, 'nothing read from Postgres so far');
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(published, ['x', 'm', 'y', 'n'], 'the grace out: the gap read, then the held batch');
  assert.is(reads.length, 1);
  relay.close();
});

test('an announced position at or below the cursor reads nothing; a later one reads only what is new', async () => {
  const { store, commit, reads } = fakeStore();
  const { relay, published } = relayOver(store);
  await relay.watch('w');
  const b = commit('a');
  relay.committed(b.rows, new Map([['w', b.position]]));
  relay.announced('w', 1);
  await settle();
  assert.is(reads.length, 0);
  commit('o');
  relay.announced('w', 2);
  await settle();
  assert.equal(published, ['a', 'o']);
  assert.equal(reads, [{ position: 1, id: 'a' }]);
  relay.close();
});

test('after the bus comes back every room is read from its cursor', async () => {
  const { store, commit } = fakeStore();
  const { relay, published } = relayOver(store);
  await relay.watch('w');
  commit('lost');
  relay.resumed();
  await settle();
  assert.equal(published, ['lost']);
  relay.close();
});

test('two batches committed here for one webhook and reported in reverse order are published once each, in position order', async () => {
  const { store, commit } = fakeStore();
  const { relay, published } = relayOver(store);
  await relay.watch('w');
  // The writer keeps one batch of a webhook out at a time (its lanes), but the relay does not
  // count on it: the first to commit (position 1) is the second to be reported.
  const first = commit('p', 'q');
  const second = commit('r');
  relay.committed(second.rows, new Map([['w', second.position]]));
  assert.equal(published, [], 'the batch ahead of its predecessor is held');
  relay.committed(first.rows, new Map([['w', first.position]]));
  await settle();
  assert.equal(published, ['p', 'q', 'r']);
  // And when the answer of the first comes a turn later, after the held one was read back.
  const third = commit('s');
  const fourth = commit('t', 'u');
  relay.committed(fourth.rows, new Map([['w', fourth.position]]));
  await settle();
  relay.committed(third.rows, new Map([['w', third.position]]));
  await settle();
  assert.equal(published, ['p', 'q', 'r', 's', 't', 'u'], 'nothing twice, nothing out of order');
  relay.close();
});

test('a webhook deleted and created again with both notices lost is reported deleted by the check, even once its new positions pass the cursor', async () => {
  const { store, commit, recreate } = fakeStore();
  commit('old1');
  commit('old2');
  const { relay, published, deleted } = relayOver(store, 20);
  assert.is(await relay.watch('w'), 'old2');
  recreate();
  // The new webhook's batches reach positions 1, 2, 3: past the room's cursor (2), announced by nobody.
  commit('new1');
  commit('new2');
  commit('new3');
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(deleted.slice(0, 1), ['w'], 'the room is emptied: its members join again and replay the new webhook from its start');
  assert.equal(published, [], 'nothing of the new webhook is published as if it followed the old one');
  relay.close();
});

test.run();
