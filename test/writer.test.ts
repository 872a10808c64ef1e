import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import type { CapturedRow, Store } from '../src/store.js';
import { createWriter, laneOf } from '../src/writer.js';
import { testDatabaseUrl } from './support/db.js';
import { eventually } from './support/observe.js';
import { createWebhook, startServer, type TestServer } from './support/server.js';
import { joined, type Frame, type TestClient } from './support/ws.js';

/** A store whose inserts are recorded and released by hand, to see exactly how rows are batched. */
function fakeStore() {
  const batches: CapturedRow[][] = [];
  // `skip`: webhooks deleted before the batch committed.
  const gates: { release: (fail?: Error, skip?: Set<string>) => void }[] = [];
  /** What `storedIds` answers after a broken connection: the committed ids, or an error. */
  // 'waits': the query never answers, as postgres.js holds one while Postgres refuses connections.
  const afterwards: { answer: Set<string> | Error | 'waits' } = { answer: new Error('still down') };
  const store = {
    async storedIds(ids: readonly string[]) {
      if (afterwards.answer === 'waits') return new Promise<never>(() => {});
      if (afterwards.answer instanceof Error) throw afterwards.answer;
      const known = afterwards.answer;
      return new Set(ids.filter((id) => known.has(id)));
    },
    insertRequests(rows: readonly CapturedRow[]) {
      batches.push([...rows]);
      return new Promise((resolve, reject) => {
        gates.push({
          release: (fail, skip) => {
            if (fail) return reject(fail);
            // The position each webhook reached; a skipped (deleted) webhook is left out.
            resolve(new Map(rows.filter((r) => !skip?.has(r.webhookId)).map((r) => [r.webhookId, 1])));
          },
        });
      });
    },
  } as unknown as Store;
  return { store, batches, gates, afterwards };
}

const row = (n: number, size = 10): CapturedRow => ({ id: `id-${String(n).padStart(5, '0')}`, webhookId: 'w', json: 'x'.repeat(size) });
const tick = () => new Promise((r) => setImmediate(r));
const opts = { maxRows: 100, maxBytes: 1_000_000, queueMaxBytes: 10_000_000, settleTimeoutMs: 200, settleIntervalMs: 5, flushes: 1 };
const log = createLogger('silent');

const test = suite('writer');

test('a lone write is flushed at once; writes arriving during a flush form the next batch', async () => {
  const { store, batches, gates } = fakeStore();
  const published: string[][] = [];
  const w = createWriter(store, opts, { metrics: createMetrics(), log, onCommitted: (rows) => published.push(rows.map((r) => r.id))});
  const first = w.write(row(1));
  await tick();
  assert.is(batches.length, 1);
  const rest = [2, 3, 4].map((n) => w.write(row(n)));
  await tick();
  assert.is(batches.length, 1, 'one flush at a time');
  gates[0]!.release();
  assert.is(await first, 'stored');
  await tick();
  assert.equal(batches[1]!.map((r) => r.id), ['id-00002', 'id-00003', 'id-00004']);
  gates[1]!.release();
  assert.equal(await Promise.all(rest), ['stored', 'stored', 'stored']);
  assert.equal(published, [['id-00001'], ['id-00002', 'id-00003', 'id-00004']]);
});

test('batches are capped by rows and by bytes, in order', async () => {
  const { store, batches, gates } = fakeStore();
  const w = createWriter(store, { ...opts, maxRows: 3, maxBytes: 25 }, { metrics: createMetrics(), log, onCommitted: () => {}});
  const all = Array.from({ length: 7 }, (_, i) => w.write(row(i, 10)));
  // A row larger than maxBytes alone goes by itself, and ends no batch early but its own.
  all.push(w.write(row(7, 40)), w.write(row(8, 10)));
  let done = false;
  const settled = Promise.all(all).then(() => (done = true));
  for (let i = 0; i < 100 && !done; i++) {
    await tick();
    gates.at(-1)?.release();
  }
  await settled;
  // 10-byte rows: a third would pass 25 bytes, so batches hold 2 rows; never more than 25 bytes
  // but for the one row larger than that.
  assert.equal(batches.map((b) => b.length), [2, 2, 2, 1, 1, 1]);
  assert.equal(batches.map((b) => b.reduce((n, r) => n + r.json.length, 0)), [20, 20, 20, 10, 40, 10]);
  assert.equal(batches.flat().map((r) => r.id), all.map((_, i) => row(i).id));
});

test('a failed insert rejects its batch with 503 and the writer recovers', async () => {
  const { store, gates } = fakeStore();
  const metrics = createMetrics();
  const w = createWriter(store, opts, { metrics: metrics, log, onCommitted: () => {}});
  const a = w.write(row(1));
  await tick();
  gates[0]!.release(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
  const err = await a.catch((e: unknown) => e);
  assert.instance(err, HttpError);
  assert.is((err as HttpError).status, 503);
  assert.is(w.healthy, false);
  const b = w.write(row(2));
  await tick();
  gates[1]!.release();
  assert.is(await b, 'stored');
  assert.is(w.healthy, true);
  assert.is(metrics.batchFailures.value, 1);
});

test('a connection lost mid-insert is settled: committed rows answer stored, the others 503', async () => {
  const { store, gates, afterwards } = fakeStore();
  const published: string[] = [];
  const w = createWriter(store, opts, { metrics: createMetrics(), log, onCommitted: (rows) => published.push(...rows.map((r) => r.id))});
  const p = [w.write(row(1)), w.write(row(2))];
  await tick();
  gates[0]!.release(Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' }));
  await tick();
  // While it is being settled, new captures are refused at once rather than queued.
  const during = (await w.write(row(3)).catch((e: unknown) => e)) as HttpError;
  assert.is(during.code, 'storage_unavailable');
  afterwards.answer = new Set(['id-00001']);
  const [a, b] = await Promise.allSettled(p);
  assert.equal(a, { status: 'fulfilled', value: 'stored' });
  assert.is(b!.status, 'rejected');
  assert.is(((b as PromiseRejectedResult).reason as HttpError).status, 503);
  assert.equal(published, ['id-00001'], 'the committed row is still published');
  // And the writer takes rows again.
  const next = w.write(row(4));
  await tick();
  gates[1]!.release();
  assert.is(await next, 'stored');
});

test('a batch that cannot be settled in time answers 503', async () => {
  const { store, gates } = fakeStore();
  const w = createWriter(store, { ...opts, settleTimeoutMs: 30 }, { metrics: createMetrics(), log, onCommitted: () => {}});
  const p = w.write(row(1));
  await tick();
  gates[0]!.release(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  const err = (await p.catch((e: unknown) => e)) as HttpError;
  assert.is(err.code, 'storage_unavailable');
});

test('a settle whose query never answers still ends at settleTimeoutMs with 503', async () => {
  const { store, gates, afterwards } = fakeStore();
  afterwards.answer = 'waits';
  const w = createWriter(store, { ...opts, settleTimeoutMs: 100 }, { metrics: createMetrics(), log, onCommitted: () => {}});
  const p = w.write(row(1));
  await tick();
  const cut = Date.now();
  gates[0]!.release(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  // Unbounded, the settle would wait for ever: the test fails at 2 s rather than hang.
  const err = (await Promise.race([p.catch((e: unknown) => e), new Promise((r) => setTimeout(() => r(new HttpError('internal', 'no answer in 2 s')), 2000))])) as HttpError;
  assert.is(err.code, 'storage_unavailable', err.message);
  assert.ok(Date.now() - cut < 1000, `answered after ${Date.now() - cut} ms`);
});

test('rows whose webhook vanished resolve "gone" and are not published', async () => {
  const { store, gates } = fakeStore();
  const published: string[] = [];
  const w = createWriter(store, opts, { metrics: createMetrics(), log, onCommitted: (rows) => published.push(...rows.map((r) => r.id))});
  const p = [w.write({ ...row(1), webhookId: 'deleted' }), w.write(row(2))];
  await tick();
  gates[0]!.release(undefined, new Set(['deleted']));
  assert.equal(await Promise.all(p), ['gone', 'stored']);
  assert.equal(published, ['id-00002']);
});

test('the queue is bounded: past queueMaxBytes a write is refused with 503 overloaded', async () => {
  const { store } = fakeStore();
  const w = createWriter(store, { ...opts, queueMaxBytes: 25 }, { metrics: createMetrics(), log, onCommitted: () => {}});
  void w.write(row(1, 10));
  void w.write(row(2, 10));
  const err = (await w.write(row(3, 10)).catch((e: unknown) => e)) as HttpError;
  assert.is(err.code, 'overloaded');
  assert.is(err.status, 503);
});

test('a row larger than queueMaxBytes is taken into an empty queue (a 503 would be retried for ever)', async () => {
  const { store, gates } = fakeStore();
  const w = createWriter(store, { ...opts, queueMaxBytes: 25 }, { metrics: createMetrics(), log, onCommitted: () => {}});
  const big = w.write(row(1, 100));
  await tick();
  gates[0]!.release();
  assert.is(await big, 'stored');
  // Beside another queued row it is refused as any other.
  const gate = w.write(row(2, 10));
  await tick(); // row 2's batch is out; the queue is empty again
  void w.write(row(3, 10));
  const err = (await w.write(row(4, 100)).catch((e: unknown) => e)) as HttpError;
  assert.is(err.code, 'overloaded');
  gates[1]!.release();
  await gate;
});

test('close waits for every accepted row, then refuses new ones', async () => {
  const { store, gates } = fakeStore();
  const w = createWriter(store, opts, { metrics: createMetrics(), log, onCommitted: () => {}});
  const a = w.write(row(1));
  await tick();
  const b = w.write(row(2));
  let closed = false;
  const closing = w.close().then(() => (closed = true));
  gates[0]!.release();
  await tick();
  await tick();
  assert.is(closed, false, 'row 2 is still waiting');
  gates[1]!.release();
  await closing;
  assert.equal(await Promise.all([a, b]), ['stored', 'stored']);
  const err = (await w.write(row(3)).catch((e: unknown) => e)) as HttpError;
  assert.is(err.code, 'draining');
  await w.close();
});

test('a publish that throws is logged, never turned into a 503 for committed rows', async () => {
  const { store, gates } = fakeStore();
  const w = createWriter(store, opts, { metrics: createMetrics(), log, onCommitted: () => {
    throw new Error('bug in publish');
  } });
  const a = w.write(row(1));
  await tick();
  gates[0]!.release();
  assert.is(await a, 'stored');
});

test('a row whose sender went away while it waited is dropped, not stored; once its batch is sent it is stored', async () => {
  const { store, batches, gates } = fakeStore();
  const published: string[] = [];
  const metrics = createMetrics();
  const w = createWriter(store, opts, { metrics: metrics, log, onCommitted: (rows) => published.push(...rows.map((r) => r.id))});
  let goneA = false;
  const a = w.write(row(1), () => goneA);
  await tick();
  assert.is(batches.length, 1, 'the first batch is sent');
  let goneB = false;
  const b = w.write(row(2), () => goneB);
  const c = w.write(row(3), () => false);
  // Both senders close while their rows wait: A's batch is already out, B's is not.
  goneA = true;
  goneB = true;
  gates[0]!.release();
  assert.is(await a, 'stored', 'a sent batch is stored whatever its sender does');
  assert.is(await b, 'dropped');
  await tick();
  assert.equal(batches[1]!.map((r) => r.id), ['id-00003'], 'the dropped row is not in the next batch');
  gates[1]!.release();
  assert.is(await c, 'stored');
  assert.equal(published, ['id-00001', 'id-00003']);
  assert.is(w.pending, 0);
  // A batch of nothing but dropped rows sends no statement, and the writer stays usable.
  const d = w.write(row(4), () => true);
  assert.is(await d, 'dropped');
  await tick();
  assert.is(batches.length, 2);
  const e = w.write(row(5));
  await tick();
  gates[2]!.release();
  assert.is(await e, 'stored');
  assert.match(await metrics.render(), /^hooky_captures_dropped_total 2$/m);
  await w.close();
  metrics.close();
});

const several = { ...opts, flushes: 3 };
/** A webhook id in each of the three lanes, and a row of lane `l`. */
const inLane = [0, 1, 2].map((l) => Array.from({ length: 100 }, (_, i) => `hook-${i}`).find((id) => laneOf(id, 3) === l)!);
const rowIn = (l: number, n: number): CapturedRow => ({ ...row(n), webhookId: inLane[l]! });
const lost = () => Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' });

test('with several flushes, batches of other webhooks go out while earlier ones are out, and each is answered and published when it commits', async () => {
  const { store, batches, gates } = fakeStore();
  const published: string[][] = [];
  const w = createWriter(store, several, { metrics: createMetrics(), log, onCommitted: (rows) => published.push(rows.map((r) => r.id)) });
  const a = w.write(rowIn(0, 1));
  await tick();
  const b = [w.write(rowIn(1, 2)), w.write(rowIn(1, 3))];
  await tick();
  const c = w.write(rowIn(2, 4));
  await tick();
  assert.equal(batches.map((x) => x.map((r) => r.id)), [['id-00001'], ['id-00002', 'id-00003'], ['id-00004']], 'three batches out at once');
  const d = w.write(rowIn(2, 5));
  await tick();
  assert.is(batches.length, 3, 'a lane has one batch out at a time');
  // They commit in the reverse order: each is answered on its own.
  gates[2]!.release();
  assert.is(await c, 'stored');
  await tick();
  assert.equal(batches[3]!.map((r) => r.id), ['id-00005'], 'the lane takes its waiting row once its batch is answered');
  gates[1]!.release();
  assert.equal(await Promise.all(b), ['stored', 'stored']);
  gates[3]!.release();
  gates[0]!.release();
  assert.is(await a, 'stored');
  assert.is(await d, 'stored');
  assert.equal(published, [['id-00004'], ['id-00002', 'id-00003'], ['id-00005'], ['id-00001']]);
  await w.close();
});

test('a batch settled while others are out: they finish on their own, new rows get 503 and the waiting ones go once it is settled', async () => {
  const { store, batches, gates, afterwards } = fakeStore();
  const published: string[] = [];
  const w = createWriter(store, several, { metrics: createMetrics(), log, onCommitted: (rows) => published.push(...rows.map((r) => r.id)) });
  const a = w.write(rowIn(0, 1));
  await tick();
  const b = w.write(rowIn(1, 2));
  await tick();
  assert.is(batches.length, 2);
  gates[0]!.release(lost());
  await tick();
  // Row 4 comes during the settle and is refused.
  const refused = (await w.write(row(4)).catch((e: unknown) => e)) as HttpError;
  assert.is(refused.code, 'storage_unavailable');
  // The batch out meanwhile commits and is answered, settle or not.
  gates[1]!.release();
  assert.is(await b, 'stored');
  assert.equal(published, ['id-00002']);
  afterwards.answer = new Set(['id-00001']);
  assert.is(await a, 'stored');
  assert.equal(published, ['id-00002', 'id-00001']);
  const c = w.write(rowIn(0, 3));
  await tick();
  assert.equal(batches[2]!.map((r) => r.id), ['id-00003'], 'the writer takes rows again');
  gates[2]!.release();
  assert.is(await c, 'stored');
  await w.close();
});

test('rows accepted before a settle wait, unsent, until every batch cut off is settled', async () => {
  const { store, batches, gates, afterwards } = fakeStore();
  // The second batch's rows cannot be looked up until `secondBack`: its settle outlasts the first's.
  let secondBack = false;
  const storedIds = store.storedIds.bind(store);
  store.storedIds = async (ids) => {
    if (ids.includes('id-00002') && !secondBack) throw new Error('still down');
    return storedIds(ids);
  };
  const w = createWriter(store, { ...several, settleTimeoutMs: 5_000 }, { metrics: createMetrics(), log, onCommitted: () => {} });
  const out: Promise<unknown>[] = [];
  for (const n of [1, 2, 3]) {
    out.push(w.write(rowIn(n - 1, n)));
    await tick();
  }
  const waiting = w.write(rowIn(2, 4));
  await tick();
  assert.is(batches.length, 3, 'row 4 waits: its lane has a batch out');
  // Two connections are cut off: two settles at once; the third batch commits meanwhile.
  gates[0]!.release(lost());
  gates[1]!.release(lost());
  gates[2]!.release();
  assert.is(await out[2], 'stored');
  afterwards.answer = new Set(['id-00001', 'id-00002']);
  assert.is(await out[0], 'stored');
  // One settle is over, the other is not: still no new rows, and row 4 is still not sent.
  assert.is(((await w.write(row(5)).catch((e: unknown) => e)) as HttpError).code, 'storage_unavailable');
  await tick();
  assert.is(batches.length, 3, 'nothing is sent while a batch is being settled');
  secondBack = true;
  assert.is(await out[1], 'stored');
  await tick();
  assert.equal(batches[3]!.map((r) => r.id), ['id-00004'], 'the waiting row goes once every settle is over');
  gates[3]!.release();
  assert.is(await waiting, 'stored');
  await w.close();
});

test('with several flushes, one webhook still has one batch out at a time, so this process commits it in id order', async () => {
  const { store, batches, gates } = fakeStore();
  const w = createWriter(store, several, { metrics: createMetrics(), log, onCommitted: () => {} });
  const a = w.write(row(1));
  await tick();
  const b = [w.write(row(2)), w.write(row(3))];
  await tick();
  assert.is(batches.length, 1);
  gates[0]!.release();
  assert.is(await a, 'stored');
  await tick();
  assert.equal(batches[1]!.map((r) => r.id), ['id-00002', 'id-00003']);
  gates[1]!.release();
  assert.equal(await Promise.all(b), ['stored', 'stored']);
  await w.close();
});

test('close waits for every batch out, whatever order they commit in', async () => {
  const { store, gates } = fakeStore();
  const w = createWriter(store, several, { metrics: createMetrics(), log, onCommitted: () => {} });
  const a = w.write(rowIn(0, 1));
  await tick();
  const b = w.write(rowIn(1, 2));
  await tick();
  const c = w.write(rowIn(2, 3));
  let closed = false;
  const closing = w.close().then(() => (closed = true));
  await tick();
  assert.is(gates.length, 3, 'the row accepted before close still goes');
  gates[2]!.release();
  gates[0]!.release();
  await tick();
  await tick();
  assert.is(closed, false, 'the second batch is still out');
  gates[1]!.release();
  await closing;
  assert.equal(await Promise.all([a, b, c]), ['stored', 'stored', 'stored']);
  const err = (await w.write(row(4)).catch((e: unknown) => e)) as HttpError;
  assert.is(err.code, 'draining');
});

test.run();

interface Live {
  server: TestServer;
  sql: postgres.Sql;
  clients: TestClient[];
}

const live = suite<Live>('writer with three flushes in flight, real Postgres', { clients: [] } as unknown as Live);

live.before(async (ctx) => {
  ctx.sql = postgres(await testDatabaseUrl(), { max: 2, onnotice: () => {} });
  ctx.server = await startServer({ HOOKY_WRITER_FLUSHES: '3' });
  ctx.clients = [];
});
live.after(async (ctx) => {
  await Promise.all(ctx.clients.map((c) => c.close()));
  await ctx.server.close();
  await ctx.sql.end();
});

live('concurrent captures are all stored once answered 2xx, and reach each room once, in commit order', async (ctx) => {
  const hooks = [(await createWebhook(ctx.server.url)).id, (await createWebhook(ctx.server.url)).id];
  const members = await Promise.all(hooks.map((id) => joined(ctx.server.wsUrl, id)));
  ctx.clients.push(...members);
  const sent = new Map<string, string[]>(hooks.map((id) => [id, []]));
  // 12 senders at once keep several batches out, of both webhooks and of one.
  const sender = async (i: number) => {
    for (let n = 0; n < 40; n++) {
      const hook = hooks[(i + n) % 3 === 0 ? 1 : 0]!;
      const res = await fetch(`${ctx.server.url}/h/${hook}`, { method: 'POST', body: `s${i}-${n}` });
      assert.is(res.status, 200);
      sent.get(hook)!.push(((await res.json()) as { id: string }).id);
    }
  };
  await Promise.all(Array.from({ length: 12 }, (_, i) => sender(i)));
  const ids = (frames: Frame[]) => frames.filter((f) => f.event === 'new-request').map((f) => f.data.id as string);
  for (const [i, hook] of hooks.entries()) {
    const answered = sent.get(hook)!;
    // Commit order: the batch's position, then the id.
    const stored = await ctx.sql<{ id: string }[]>`
      select r.id::text as id from requests r
      join request_batches b on b.batch = r.batch and b.webhook_id = r.webhook_id
      where r.webhook_id = ${hook} order by b.position, r.id`;
    assert.equal(new Set(stored.map((r) => r.id)), new Set(answered), 'every 2xx is stored, and nothing else');
    await eventually(() => ids(members[i]!.frames).length >= answered.length, 5000, `every capture of room ${i}`);
    await new Promise((r) => setTimeout(r, 200)); // room for a duplicate to show up
    assert.equal(ids(members[i]!.frames), stored.map((r) => r.id), 'once each, in commit order');
  }
});

live.run();
