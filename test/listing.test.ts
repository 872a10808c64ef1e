import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startServer, uniqueId, type TestServer } from './support/server.js';

interface Listed {
  id: string;
  url: string;
  createdAt: string;
  response: unknown;
  requestCount: number;
  requestCountCapped: boolean;
}
interface Page {
  webhooks: Listed[];
  next: string | null;
}

const test = suite<{ s: TestServer }>('GET /api/webhooks', {} as never);

test.before(async (ctx) => {
  ctx.s = await startServer();
});
test.after(async (ctx) => {
  await ctx.s.close();
});

const create = async (base: string, body: Record<string, unknown>) => {
  const res = await fetch(`${base}/api/webhooks`, { method: 'POST', body: JSON.stringify(body) });
  assert.is(res.status, 201);
};

test('GET /api/webhooks lists webhooks newest first with their request counts', async (ctx) => {
  const ids = [uniqueId('la'), uniqueId('lb'), uniqueId('lc')];
  for (const id of ids) await create(ctx.s.url, { id });
  await create(ctx.s.url, { id: uniqueId('ld'), response: { status: 202 } });
  for (let i = 0; i < 3; i++) assert.is((await fetch(`${ctx.s.url}/h/${ids[1]}`, { method: 'POST', body: `${i}` })).status, 200);
  const res = await fetch(`${ctx.s.url}/api/webhooks?limit=4`);
  assert.is(res.status, 200);
  const page = (await res.json()) as Page;
  assert.is(page.webhooks.length, 4);
  assert.is(page.webhooks[0]!.response && (page.webhooks[0]!.response as { status: number }).status, 202);
  assert.equal(page.webhooks.slice(1).map((w) => w.id), [...ids].reverse());
  const b = page.webhooks.find((w) => w.id === ids[1])!;
  assert.is(b.requestCount, 3);
  assert.is(b.requestCountCapped, false);
  assert.is(b.url, `http://localhost:${ctx.s.server.port}/h/${ids[1]}`);
  assert.is(page.webhooks.find((w) => w.id === ids[0])!.requestCount, 0);
});

test('GET /api/webhooks pages through every webhook without duplicates, across a deleted cursor', async (ctx) => {
  const mine = new Set<string>();
  for (let i = 0; i < 7; i++) {
    const id = uniqueId('lp');
    mine.add(id);
    await create(ctx.s.url, { id });
  }
  const seen: string[] = [];
  let before: string | null = null;
  let deletedCursor = false;
  do {
    const page = (await (await fetch(`${ctx.s.url}/api/webhooks?limit=3${before ? `&before=${before}` : ''}`)).json()) as Page;
    seen.push(...page.webhooks.map((w) => w.id));
    before = page.next;
    // The webhook the cursor names goes away: the next page must still follow on.
    if (!deletedCursor && page.webhooks.length > 0) {
      deletedCursor = true;
      assert.is((await fetch(`${ctx.s.url}/api/webhooks/${page.webhooks.at(-1)!.id}`, { method: 'DELETE' })).status, 204);
    }
  } while (before && seen.filter((id) => mine.has(id)).length < mine.size);
  assert.is(new Set(seen).size, seen.length, 'no duplicates');
  for (const id of mine) assert.ok(seen.includes(id), id);
});

test('GET /api/webhooks answers 400 invalid_request on a bad limit or cursor', async (ctx) => {
  for (const q of ['limit=0', 'limit=1001', 'limit=x', 'before=nope', 'before=123.-x', 'before=12', 'limit=1&limit=2']) {
    const res = await fetch(`${ctx.s.url}/api/webhooks?${q}`);
    assert.is(res.status, 400, q);
    assert.is(((await res.json()) as { error: string }).error, 'invalid_request');
  }
});

test('GET /api/webhooks needs the API token when one is set', async () => {
  const token = 'listing-token-0123456789';
  const s = await startServer({ HOOKY_API_TOKEN: token });
  try {
    assert.is((await fetch(`${s.url}/api/webhooks`)).status, 401);
    assert.is((await fetch(`${s.url}/api/webhooks`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  } finally {
    await s.close();
  }
});

test.run();
