import postgres from 'postgres';
import * as assert from 'uvu/assert';
import { migrate } from '../src/db/migrate.js';
import { newRequestId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { requestIdFloor } from '../src/protocol.js';
import { createStore, deleteEmptiedBatches, deleteRequests, type CapturedRow } from '../src/store.js';
import { testDatabaseUrl } from './support/db.js';
import { uniqueId } from './support/server.js';
import { withCleanup } from './support/suite.js';

const test = withCleanup('store: the group-commit INSERT and webhook deletion');

// A body with every character that could cut the newline-joined lists if it reached them raw.
const rowFor = (webhookId: string): CapturedRow => {
  const id = newRequestId();
  return { id, webhookId, json: JSON.stringify({ id, webhookId, body: 'line one\nline two\r\n\t"quoted" \\n \u2028 \u0000' }) };
};

async function open(ctx: { cleanup: (() => unknown)[] }) {
  const sql = postgres(await testDatabaseUrl(), { max: 4, onnotice: () => {} });
  ctx.cleanup.push(() => sql.end());
  await migrate(sql, createLogger('silent'));
  const store = createStore(sql);
  const count = async (webhookId: string) => (await sql<{ n: number }[]>`select count(*)::int as n from requests where webhook_id = ${webhookId}`)[0]!.n;
  const batchesOf = async (webhookId: string) =>
    (await sql<{ position: string }[]>`select position::text as position from request_batches where webhook_id = ${webhookId} order by position`).map((r) => Number(r.position));
  return { sql, store, count, batchesOf };
}

test('a batch stores every row whose webhook exists and reports the others as not stored', async (ctx) => {
  const { store, count } = await open(ctx);
  const live = uniqueId('live');
  const other = uniqueId('other');
  await store.createWebhook(live, null);
  await store.createWebhook(other, null);
  const rows = [rowFor(live), rowFor(other), rowFor(live)];
  const reached = await store.insertRequests(rows);
  assert.equal([...reached.keys()].sort(), [live, other].sort(), 'every row stored');
  assert.equal([...reached.values()], [1, 1], 'each webhook at its first position');
  assert.is(await count(live), 2);
  assert.is(await count(other), 1);
  // Every payload comes back as the exact text that was written, in its own row.
  for (const r of rows) assert.is(await store.getRequest(r.webhookId, r.id), r.json);

  const gone = uniqueId('gone');
  const mixed = [rowFor(live), rowFor(gone), rowFor(other), rowFor(gone)];
  const stored = await store.insertRequests(mixed);
  assert.equal([...stored.keys()].sort(), [live, other].sort(), 'the deleted webhook is left out');
  assert.equal([...stored.values()], [2, 2]);
  for (const r of [mixed[0]!, mixed[2]!]) assert.is(await store.getRequest(r.webhookId, r.id), r.json);
  assert.is(await count(gone), 0);
  for (const id of [live, other]) await store.deleteWebhook(id);
});

test('deleting a webhook waits for a batch that holds it, then removes that batch\'s rows too', async (ctx) => {
  const { sql, store, count } = await open(ctx);
  const id = uniqueId('race');
  await store.createWebhook(id, null);
  let deleted: boolean | undefined;
  let deleting: Promise<boolean> | undefined;
  // The batch's transaction stays open after its INSERT, as a slow commit would.
  await sql.begin(async (tx) => {
    assert.equal(await createStore(tx as unknown as postgres.Sql).insertRequests([rowFor(id), rowFor(id)]), new Map([[id, 1]]));
    deleting = store.deleteWebhook(id).then((d) => (deleted = d));
    await new Promise((r) => setTimeout(r, 300));
    assert.is(deleted, undefined, 'the delete waits for the batch to commit');
  });
  assert.is(await deleting, true);
  assert.is(await count(id), 0, 'no request outlives its webhook');
  assert.is(await store.getWebhook(id), undefined);
});

test('a batch that comes after a delete stores nothing for that webhook', async (ctx) => {
  const { store, count } = await open(ctx);
  const id = uniqueId('late');
  await store.createWebhook(id, null);
  assert.is(await store.deleteWebhook(id), true);
  const late = [rowFor(id)];
  assert.equal(await store.insertRequests(late), new Map());
  assert.is(await count(id), 0);
  assert.is(await store.deleteWebhook(id), false);
});

test('concurrent batches sharing webhooks, in either order, never deadlock, and each webhook gets every position once', async (ctx) => {
  const { store } = await open(ctx);
  const [w1, w2] = [uniqueId('pos'), uniqueId('pos')];
  for (const id of [w1, w2]) await store.createWebhook(id, null);
  const runs = 40;
  const answers = await Promise.all(
    Array.from({ length: runs }, (_, i) => store.insertRequests(i % 2 === 0 ? [rowFor(w1), rowFor(w2)] : [rowFor(w2), rowFor(w1)])),
  );
  for (const id of [w1, w2]) {
    const positions = answers.map((a) => a.get(id)!).sort((a, b) => a - b);
    assert.equal(positions, Array.from({ length: runs }, (_, i) => i + 1));
    assert.equal(await store.latest(id).then((l) => l?.position), runs);
  }
  for (const id of [w1, w2]) await store.deleteWebhook(id);
});

test('a replay from a request follows commit order, not id order', async (ctx) => {
  const { sql, store } = await open(ctx);
  const id = uniqueId('order');
  await store.createWebhook(id, null);
  const [small, big] = [rowFor(id), rowFor(id)];
  // The greater id commits first, as when another writer is quicker.
  await store.insertRequests([big]);
  await store.insertRequests([small]);
  const after = async (since: string) => (await store.requestsAfter(id, await store.cursorOf(id, since), 10)).rows.map((r) => r.id);
  assert.equal(await after(big.id), [small.id]);
  assert.equal(await after(small.id), []);
  assert.equal((await store.latest(id))?.id, small.id);
  await store.deleteWebhook(id);
  assert.is((await sql`select count(*)::int as n from request_batches where webhook_id = ${id}`)[0]!.n, 0, 'its batches go with it');
});

test('a replay from a deleted request gets everything committed after it, also what another writer committed later with smaller ids', async (ctx) => {
  const { store, sql } = await open(ctx);
  const id = uniqueId('gone');
  await store.createWebhook(id, null);
  const [small, mine, later] = [rowFor(id), rowFor(id), rowFor(id)];
  await store.insertRequests([mine]); // position 1: the request the client saw last
  await store.insertRequests([small]); // position 2: a smaller id, committed after it
  await store.insertRequests([later]); // position 3
  // As DELETE …/requests/:requestId deletes one request: its batch row stays.
  await sql`delete from requests where id = ${mine.id}::uuid`;
  const replay = (await store.requestsAfter(id, await store.cursorOf(id, mine.id), 10)).rows.map((r) => r.id);
  assert.equal(replay, [small.id, later.id]);
});

test('requestsAfter cuts a page by payload bytes (one row at least) and says more follow', async (ctx) => {
  const { store } = await open(ctx);
  const id = uniqueId('bytes');
  await store.createWebhook(id, null);
  const big = (n: number): CapturedRow => {
    const rid = newRequestId();
    return { id: rid, webhookId: id, json: JSON.stringify({ id: rid, pad: 'x'.repeat(n) }) };
  };
  const rows = [big(1000), big(1000), big(1000), big(5000)];
  await store.insertRequests(rows.slice(0, 2));
  await store.insertRequests(rows.slice(2));
  const start = { position: 0, id: requestIdFloor(0) };
  const size = rows[0]!.json.length;
  const two = await store.requestsAfter(id, start, 10, 2 * size);
  assert.equal([two.rows.map((r) => r.id), two.truncated], [rows.slice(0, 2).map((r) => r.id), true]);
  const rest = await store.requestsAfter(id, two.rows[1]!, 10, 10);
  assert.equal([rest.rows.map((r) => r.id), rest.truncated], [[rows[2]!.id], true], 'one row however large');
  const all = await store.requestsAfter(id, start, 10);
  assert.equal([all.rows.map((r) => [r.id, r.position]), all.truncated], [rows.map((r, i) => [r.id, i < 2 ? 1 : 2]), false]);
  assert.equal(all.rows.map((r) => r.json), rows.map((r) => r.json), 'each payload as it was stored');
  const three = await store.requestsAfter(id, start, 3);
  assert.equal([three.rows.map((r) => r.json), three.truncated], [rows.slice(0, 3).map((r) => r.json), true], 'cut by the row limit');
  // Past ten rows and ten positions, where an order by their text would go astray.
  const more = Array.from({ length: 12 }, () => big(10));
  for (const r of more) await store.insertRequests([r]);
  const page = await store.requestsAfter(id, all.rows.at(-1)!, 20);
  assert.equal([page.rows.map((r) => r.id), page.truncated], [more.map((r) => r.id), false]);
  // And the replay's pages (pageAfter), cut by rows and by bytes.
  const ids = await store.pageAfter(id, all.rows.at(-1)!, 20, Number.MAX_SAFE_INTEGER);
  assert.equal([ids.ids, ids.more, ids.last], [more.map((r) => r.id), false, { position: 14, id: more.at(-1)!.id }]);
  const eleven = await store.pageAfter(id, all.rows.at(-1)!, 11, Number.MAX_SAFE_INTEGER);
  assert.equal([eleven.ids, eleven.more], [more.slice(0, 11).map((r) => r.id), true]);
  const bytes = await store.pageAfter(id, all.rows.at(-1)!, 20, 10 * more[0]!.json.length);
  assert.equal([bytes.ids, bytes.more], [more.slice(0, 10).map((r) => r.id), true]);
  assert.equal((await store.latest(id))?.position, 14);
  await store.deleteWebhook(id);
});

test('deleteRequests deletes the batch rows it leaves empty, and only those', async (ctx) => {
  const { sql, store, batchesOf } = await open(ctx);
  const id = uniqueId('trim');
  const other = uniqueId('trim');
  await store.createWebhook(id, null);
  await store.createWebhook(other, null);
  // Positions 1–3 of `id`, the second shared with `other` (its position 1).
  const batches = [[rowFor(id), rowFor(id)], [rowFor(id), rowFor(other)], [rowFor(id), rowFor(id)]];
  for (const b of batches) await store.insertRequests(b);
  const ids = (rows: CapturedRow[]) => rows.map((r) => r.id);
  const gone = (list: string[]) => deleteRequests(sql, sql`select id from requests where id = any(${list}::uuid[])`);

  assert.is(await gone([batches[0]![0]!.id]), 1);
  assert.equal(await batchesOf(id), [1, 2, 3], 'a batch with a row left keeps its row');
  assert.is(await gone([batches[0]![1]!.id, batches[2]![0]!.id]), 2, 'across batches in one call');
  assert.equal(await batchesOf(id), [2, 3], 'the emptied batch goes, the one with a row left stays');
  assert.is(await gone(ids(batches[1]!)), 2, 'across webhooks in one call');
  assert.equal([await batchesOf(id), await batchesOf(other)], [[3], []]);
  assert.is(await gone(ids(batches[1]!)), 0, 'nothing left to delete');
  const rest = (await store.requestsAfter(id, { position: 0, id: requestIdFloor(0) }, 10)).rows;
  assert.equal(rest.map((r) => [r.id, r.position]), [[batches[2]![1]!.id, 3]]);
  for (const w of [id, other]) await store.deleteWebhook(w);
});

test('emptied batch rows are found with one index probe per batch, never a join over the whole requests table', async (ctx) => {
  const { sql } = await open(ctx);
  const batches = [{ webhook_id: 'w1', batch: '1' }, { webhook_id: 'w2', batch: '2' }];
  // Join planning turned against the probe, as missing statistics did on a 3.8-million-row table
  // (a hash anti join that read all of it): the fenced subquery is not a join, so it stays a
  // probe whatever the planner's costs say. (Seq scans are off too, so that the probe of a
  // small test table is not a scan of its few pages either.)
  const plan = await sql.begin(async (tx) => {
    await tx`set local enable_nestloop = off`;
    await tx`set local enable_seqscan = off`;
    const rows = await tx<{ 'QUERY PLAN': string }[]>`explain ${deleteEmptiedBatches(tx, batches)}`;
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  });
  assert.not.match(plan, /Anti Join/, plan);
  assert.match(plan, /SubPlan[\s\S]*(Index (Only )?Scan using requests_webhook_id_id on requests|Bitmap Index Scan on requests_webhook_id_id)/, plan);
});

test('a replay walks past batch rows left without rows, however many', async (ctx) => {
  const { sql, store } = await open(ctx);
  const id = uniqueId('empty');
  await store.createWebhook(id, null);
  const limit = 3;
  // One batch each: the first limit + 3 are emptied behind the store's back, as two deletes
  // emptying a batch at once leave it; the two after them keep their rows.
  const rows = Array.from({ length: limit + 5 }, () => rowFor(id));
  for (const r of rows) await store.insertRequests([r]);
  const emptied = rows.slice(0, limit + 3).map((r) => r.id);
  await sql`delete from requests where webhook_id = ${id} and id = any(${emptied}::uuid[])`;
  const kept = rows.slice(limit + 3).map((r) => r.id);
  const start = { position: 0, id: requestIdFloor(0) };

  const all = await store.requestsAfter(id, start, limit);
  assert.equal([all.rows.map((r) => r.id), all.truncated], [kept, false], 'the later rows come, none missed');
  const one = await store.pageAfter(id, start, 1, Number.MAX_SAFE_INTEGER);
  assert.equal([one.ids, one.more, one.last], [[kept[0]], true, { position: limit + 4, id: kept[0] }], 'more follow');
  const rest = await store.pageAfter(id, one.last!, 1, Number.MAX_SAFE_INTEGER);
  assert.equal([rest.ids, rest.more], [[kept[1]], false]);
  // From an emptied request itself, as a client that last saw it resumes.
  const since = await store.cursorOf(id, emptied[1]!);
  assert.equal((await store.requestsAfter(id, since, limit)).rows.map((r) => r.id), kept);
  await store.deleteWebhook(id);
});

test('latest stands at the position the webhook reached when its newest batches were emptied', async (ctx) => {
  const { sql, store } = await open(ctx);
  const id = uniqueId('latest');
  await store.createWebhook(id, null);
  assert.is(await store.latest(id), null, 'nothing committed');
  const rows = [rowFor(id), rowFor(id), rowFor(id)];
  for (const r of rows) await store.insertRequests([r]);
  const last = rows.map((r) => r.id);
  await deleteRequests(sql, sql`select id from requests where id = any(${last.slice(1)}::uuid[])`);
  // At 3, not at 1: a cursor behind the counter would have the relay read back empty batches.
  assert.equal(await store.latest(id), { position: 3, id: last[0]! });
  await deleteRequests(sql, sql`select id from requests where id = ${last[0]!}::uuid`);
  assert.equal(await store.latest(id), { position: 3, id: requestIdFloor(0) });
  assert.is(await store.latest(uniqueId('none')), null, 'no such webhook');
  await store.deleteWebhook(id);
});

test.run();
