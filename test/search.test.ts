import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newRequestId } from '../src/ids.js';
import { buildPayload } from '../src/payload.js';
import { createSearch } from '../src/search.js';
import { createStore } from '../src/store.js';
import { testDatabaseUrl } from './support/db.js';
import { uniqueId } from './support/server.js';

const test = suite<{ sql: postgres.Sql; store: ReturnType<typeof createStore> }>('search', {} as never);

test.before(async (ctx) => {
  ctx.sql = postgres(await testDatabaseUrl(), { max: 2, onnotice: () => {} });
  ctx.store = createStore(ctx.sql);
  // A server that migrates the database may not have run yet in this process.
  const { migrate } = await import('../src/db/migrate.js');
  const { createLogger } = await import('../src/log.js');
  await migrate(ctx.sql, createLogger('silent'));
});
test.after(async (ctx) => {
  await ctx.sql.end();
});

/** A webhook with `n` stored requests, oldest first; `body(i)` is the body of the i-th. */
async function seed(ctx: { store: ReturnType<typeof createStore> }, n: number, body: (i: number) => string) {
  const id = uniqueId('search');
  await ctx.store.createWebhook(id, null);
  const ids: string[] = [];
  const rows = [];
  for (let i = 0; i < n; i++) {
    const rid = newRequestId();
    ids.push(rid);
    const facts = { method: 'POST', path: `/p/${i}`, headers: { 'content-type': 'text/plain' }, rawQuery: '', sourceIp: '127.0.0.1' };
    rows.push({ id: rid, webhookId: id, json: buildPayload(rid, id, facts, Buffer.from(body(i)), new Date()).json });
  }
  await ctx.store.insertRequests(rows);
  return { id, ids };
}

test('parse reads method, path, header and q, and ignores a query without them', (ctx) => {
  const search = createSearch(ctx.sql, { scanRows: 100 });
  assert.is(search.parse(''), undefined);
  assert.is(search.parse('limit=5&before=x'), undefined);
  assert.is(search.parse('q=&method='), undefined);
  assert.equal(search.parse('method=post&path=/a+b&header=X-Hub:sha256%3Dab&q=%C3%A9t%C3%A9'), {
    method: 'POST',
    path: '/a b',
    header: { name: 'x-hub', value: 'sha256=ab' },
    q: 'été',
  });
  assert.equal(search.parse('header=Stripe-Signature'), { header: { name: 'stripe-signature' } });
});

test('parse throws invalid_request for a repeated or malformed filter', (ctx) => {
  const search = createSearch(ctx.sql, { scanRows: 100 });
  for (const q of ['q=a&q=b', 'method=GE%20T', 'header=a%20b:c', 'header=:x', 'q=%00']) {
    try {
      search.parse(q);
      assert.unreachable(q);
    } catch (err) {
      assert.is((err as { code?: string }).code, 'invalid_request', q);
    }
  }
});

test('a filtered page examines at most scanRows requests and hands on a next that reaches the rest', async (ctx) => {
  // 250 requests, only the oldest matches: with 100 examined per page, the first two pages are
  // empty and carry a next, the third finds it.
  const { id, ids } = await seed(ctx, 250, (i) => (i === 0 ? 'the needle' : `hay ${i}`));
  const search = createSearch(ctx.sql, { scanRows: 100 });
  const filter = search.parse('q=NEEDLE')!;
  const pages: { ids: string[]; next: string | null }[] = [];
  let before: string | undefined;
  do {
    const page = await search.page(id, filter, 50, before, 1 << 20);
    pages.push(page);
    before = page.next ?? undefined;
  } while (before !== undefined);
  assert.equal(pages.map((p) => p.ids.length), [0, 0, 1]);
  assert.is(pages[0]!.next, ids[150], 'the oldest request the first page examined');
  assert.is(pages[1]!.next, ids[50]);
  assert.is(pages[2]!.ids[0], ids[0]);
  assert.is(pages[2]!.next, null);
});

test('a filtered page also ends once its payloads reach maxBytes, one request at least, with a next that goes on', async (ctx) => {
  const { id, ids } = await seed(ctx, 5, (i) => `match ${'x'.repeat(1000)} ${i}`);
  const search = createSearch(ctx.sql, { scanRows: 100 });
  const filter = search.parse('q=match')!;
  const first = await search.page(id, filter, 50, undefined, 3000);
  assert.equal(first.ids, [ids[4], ids[3]]);
  assert.is(first.next, ids[3]);
  const tiny = await search.page(id, filter, 50, undefined, 1);
  assert.equal(tiny.ids, [ids[4]], 'one request even when it alone is over the bound');
});

test.run();
