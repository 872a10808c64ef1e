import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Bus, BusHandlers } from '../src/bus.js';
import { inlineMaxBytes } from '../src/natsbus.js';
import { createSiblingRouter, sendOver, withSiblings, type Channel, type SiblingMessage } from '../src/siblings.js';
import type { CapturedRow } from '../src/store.js';

const test = suite('siblings');
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A primary and `n` workers in one process: each worker's bus wraps a recording NOTIFY stand-in,
 * whose `announce` plays a NOTIFY message arriving.
 */
async function service(n: number, graceMs = 30) {
  const listeners = new Map<number, (m: SiblingMessage) => void>();
  const sent: { from: number; message: SiblingMessage }[] = [];
  // Structured clone, as node:cluster's IPC copies a message.
  const router = createSiblingRouter((id, message) => listeners.get(id)?.(structuredClone(message)));
  const workers = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const id = i + 1;
    const heard: { webhookId: string; position: number | undefined; rows: readonly CapturedRow[] | undefined }[] = [];
    const inner: string[] = [];
    const notify: Bus = {
      committed: (reached) => void inner.push(`committed ${[...reached.keys()].join(',')}`),
      created: () => {},
      deleted: () => {},
      close: async () => {},
    };
    const channel: Channel = {
      send: (message) => {
        sent.push({ from: id, message });
        router.message(id, structuredClone(message));
      },
      onMessage: (listener) => {
        listeners.set(id, listener);
        return () => listeners.delete(id);
      },
    };
    const handlers: BusHandlers = {
      committed: (webhookId, position, rows) => void heard.push({ webhookId, position, rows }),
      created: () => {},
      deleted: () => {},
      resumed: () => {},
    };
    let notified: BusHandlers | undefined;
    const bus = await withSiblings(async (h) => ((notified = h), notify), channel, handlers, quiet, graceMs);
    router.joined(id);
    const announce = (webhookId: string, position: number | undefined) => notified!.committed(webhookId, position);
    return { id, bus, heard, inner, announce };
  }));
  const batches = () => sent.filter((s) => s.message.type === 'hooky:batch');
  return { router, workers, batches };
}

const row = (webhookId: string, id: string, json = `{"id":"${id}"}`): CapturedRow => ({ id, webhookId, json });

test('a batch reaches, with its rows, only the other workers that serve its room; NOTIFY still gets every batch', async () => {
  const { workers, batches } = await service(3);
  const [a, b, c] = workers as [(typeof workers)[0], (typeof workers)[0], (typeof workers)[0]];
  a.bus.committed(new Map([['w1', 1]]), [row('w1', 'r1')]);
  assert.is(batches().length, 0, 'nobody else serves w1: nothing sent');
  b.bus.watch!('w1');
  a.bus.watch!('w1');
  a.bus.committed(new Map([['w1', 2], ['w2', 5]]), [row('w1', 'r2'), row('w2', 'x'), row('w1', 'r3')]);
  assert.equal(b.heard, [{ webhookId: 'w1', position: 2, rows: [row('w1', 'r2'), row('w1', 'r3')] }]);
  assert.equal(c.heard, [], 'c serves no room');
  assert.equal(a.heard, [], 'never back to the sender');
  assert.is(batches().length, 1, 'one message, for w1 only (w2 is served nowhere else)');
  assert.equal(a.inner, ['committed w1', 'committed w1,w2'], 'NOTIFY hears every batch');
  // b's batches reach a, which serves w1 too.
  b.bus.committed(new Map([['w1', 3]]), [row('w1', 'r4')]);
  assert.equal(a.heard, [{ webhookId: 'w1', position: 3, rows: [row('w1', 'r4')] }]);
});

test('a room left, or its worker gone, is no longer sent to', async () => {
  const { router, workers, batches } = await service(2);
  const [a, b] = workers as [(typeof workers)[0], (typeof workers)[0]];
  b.bus.watch!('w1');
  a.bus.committed(new Map([['w1', 1]]), [row('w1', 'r1')]);
  b.bus.unwatch!('w1');
  a.bus.committed(new Map([['w1', 2]]), [row('w1', 'r2')]);
  b.bus.watch!('w1');
  router.left(b.id);
  a.bus.committed(new Map([['w1', 3]]), [row('w1', 'r3')]);
  assert.is(batches().length, 1);
  assert.equal(b.heard.map((h) => h.position), [1]);
});

test('a worker that joins later learns what the others serve, and hears when that ends', () => {
  const sentTo: { id: number; m: SiblingMessage }[] = [];
  const router = createSiblingRouter((id, m) => sentTo.push({ id, m }));
  router.joined(1);
  router.message(1, { type: 'hooky:watch', webhookId: 'w1', on: true });
  assert.equal(sentTo, [], 'served by its only worker: elsewhere for nobody');
  router.joined(2);
  assert.equal(sentTo, [{ id: 2, m: { type: 'hooky:elsewhere', webhookId: 'w1', on: true } }]);
  router.message(2, { type: 'hooky:watch', webhookId: 'w1', on: true });
  assert.equal(sentTo.slice(1), [{ id: 1, m: { type: 'hooky:elsewhere', webhookId: 'w1', on: true } }]);
  router.left(1);
  assert.equal(sentTo.slice(2), [{ id: 2, m: { type: 'hooky:elsewhere', webhookId: 'w1', on: false } }]);
  assert.is(router.message(2, { type: 'hooky:metrics-request', id: 1 }), false, "cluster.ts's own messages are not the router's");
});

test('a batch holding a request past the inline limit, or with unknown positions, goes by reference or not at all', async () => {
  const { workers, batches } = await service(2);
  const [a, b] = workers as [(typeof workers)[0], (typeof workers)[0]];
  b.bus.watch!('w1');
  a.bus.committed(new Map([['w1', 1]]), [row('w1', 'r1'), row('w1', 'big', 'x'.repeat(inlineMaxBytes + 1))]);
  assert.equal(b.heard, [{ webhookId: 'w1', position: 1, rows: undefined }], 'the position alone: b reads the rows from Postgres');
  a.bus.committed(new Map([['w1', undefined]]), [row('w1', 'r2')]);
  assert.is(batches().length, 1, 'a settled batch (positions unknown) is left to NOTIFY');
});

test("NOTIFY's announcement waits out the grace, so that a sibling's batch, rows included, is heard first", async () => {
  const { workers } = await service(2, 30);
  const [a, b] = workers as [(typeof workers)[0], (typeof workers)[0]];
  b.bus.watch!('w1');
  // NOTIFY outran the channel: its message for position 1 is heard before a's batch is sent.
  b.announce('w1', 1);
  b.announce('w1', 2);
  a.bus.committed(new Map([['w1', 1]]), [row('w1', 'r1')]);
  assert.equal(b.heard, [{ webhookId: 'w1', position: 1, rows: [row('w1', 'r1')] }]);
  // An unknown position (a settled batch) is looked up at once: nothing else will say it.
  b.announce('w2', undefined);
  assert.equal(b.heard.slice(1), [{ webhookId: 'w2', position: undefined, rows: undefined }]);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(b.heard.slice(2), [{ webhookId: 'w1', position: 2, rows: undefined }], 'then the highest announced position, once');
});

test.run();

const channel = suite('siblings: sendOver');

/** A child on an IPC channel, killed, and this event loop held until it is surely dead: its end is closed, and the close not yet seen here. */
async function deadChild() {
  const child = spawn(process.execPath, ['-e', 'process.send("up"); setInterval(() => {}, 1000)'], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  await once(child, 'message');
  child.kill('SIGKILL');
  spawnSync('sleep', ['0.2']);
  const errors: Error[] = [];
  child.on('error', (err) => errors.push(err));
  return { child, errors, end: { isConnected: () => child.connected, send: (m: object, cb: (err: Error | null) => void) => child.send(m, cb) } };
}

channel('a message to an end that died before its death was seen fails quietly: no error event, which crashed the primary', async () => {
  // What node:cluster does with a bare send in that moment: an `error` event (unhandled, it throws).
  const bare = await deadChild();
  assert.ok(bare.child.connected, 'the death is not seen yet');
  bare.child.send({ type: 'hooky:batch' });
  await new Promise((r) => setTimeout(r, 100));
  assert.match(bare.errors.map((e) => e.message).join(), /EPIPE/);

  const guarded = await deadChild();
  assert.ok(guarded.child.connected, 'the death is not seen yet');
  assert.ok(sendOver(guarded.end, { type: 'hooky:batch' }), 'sent: the end looked open');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(guarded.errors, []);
  assert.not.ok(sendOver(guarded.end, { type: 'hooky:batch' }), 'once the close is seen, nothing is sent');
});

channel.run();
