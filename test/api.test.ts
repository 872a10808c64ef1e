import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import postgres from 'postgres';
import { scratchDatabase, testDatabaseUrl } from './support/db.js';
import { startServer, uniqueId, type TestServer } from './support/server.js';

const test = suite<{ s: TestServer; sql: postgres.Sql }>('REST API', {} as never);

test.before(async (ctx) => {
  ctx.s = await startServer();
  ctx.sql = postgres(await testDatabaseUrl(), { max: 2, onnotice: () => {} });
});
test.after(async (ctx) => {
  await ctx.s.close();
  await ctx.sql.end();
});

const post = (base: string, body?: unknown, raw?: string) =>
  fetch(`${base}/api/webhooks`, { method: 'POST', body: raw ?? (body === undefined ? null : JSON.stringify(body)) });

test('POST /api/webhooks without a body creates a webhook with an unguessable id', async (ctx) => {
  const res = await post(ctx.s.url);
  assert.is(res.status, 201);
  const w = (await res.json()) as { id: string; url: string; createdAt: string; response: null };
  assert.match(w.id, /^[A-Za-z0-9][A-Za-z0-9_-]{21}$/);
  assert.is(Buffer.from(w.id, 'base64url').length, 16, '128 random bits');
  assert.is(w.url, `http://localhost:${ctx.s.server.port}/h/${w.id}`);
  assert.ok(Math.abs(Date.parse(w.createdAt) - Date.now()) < 10_000);
  assert.is(w.response, null);
  assert.is(res.headers.get('location'), `/api/webhooks/${w.id}`);
  const ids = new Set(await Promise.all(Array.from({ length: 50 }, async () => ((await (await post(ctx.s.url)).json()) as { id: string }).id)));
  assert.is(ids.size, 50);
});

test('POST /api/webhooks with a chosen id and a custom response', async (ctx) => {
  const id = uniqueId('chosen');
  const response = { status: 201, headers: { 'X-A': 'b' }, body: 'hi', delayMs: 0 };
  const res = await post(ctx.s.url, { id, response });
  assert.is(res.status, 201);
  const w = (await res.json()) as { id: string; response: unknown };
  assert.is(w.id, id);
  assert.equal(w.response, { ...response, headers: { 'x-a': 'b' } });
  const got = await (await fetch(`${ctx.s.url}/api/webhooks/${id}`)).json();
  assert.equal(got, w);
});

test('POST /api/webhooks takes "response": null as the default answer, as GET shows it', async (ctx) => {
  const res = await post(ctx.s.url, { response: null });
  assert.is(res.status, 201);
  const w = (await res.json()) as { id: string; response: unknown };
  assert.is(w.response, null);
  const answer = await fetch(`${ctx.s.url}/h/${w.id}`);
  assert.is(answer.status, 200);
  assert.is(((await answer.json()) as { ok: boolean }).ok, true);
});

test('POST /api/webhooks answers 409 conflict for an existing id', async (ctx) => {
  const id = uniqueId();
  assert.is((await post(ctx.s.url, { id })).status, 201);
  const res = await post(ctx.s.url, { id });
  assert.is(res.status, 409);
  assert.is(((await res.json()) as { error: string }).error, 'conflict');
});

test('POST /api/webhooks answers 400 invalid_request on a bad body', async (ctx) => {
  const bad: [unknown, string?][] = [
    [undefined, '{not json'],
    [[1, 2]],
    // An array is no object, even where every key is optional.
    [[]],
    [{ response: [] }],
    [{ response: { headers: [] } }],
    ['a string'],
    [{ id: '-starts-with-dash' }],
    [{ id: 'x'.repeat(65) }],
    [{ id: 'has space' }],
    [{ unknownField: 1 }],
    [{ response: { status: 99 } }],
    [{ response: { status: 600 } }],
    [{ response: { delayMs: -1 } }],
    [{ response: { delayMs: 60_000 } }],
    [{ response: { headers: { 'content-length': '5' } } }],
    [{ response: { headers: { 'bad header': 'x' } } }],
    [{ response: { headers: { x: 'line\r\nbreak' } } }],
    [{ response: { body: 42 } }],
    // Names an object's prototype answers to, which would otherwise be dropped without a word.
    [undefined, '{"response":{"headers":{"__proto__":"p"}}}'],
    [undefined, '{"response":{"headers":{"constructor":"c","x-ok":"1"}}}'],
    // Two names that are one header.
    [{ response: { headers: { 'X-A': 'v', 'x-a': 'w' } } }],
  ];
  for (const [body, raw] of bad) {
    const res = await post(ctx.s.url, body, raw);
    assert.is(res.status, 400, JSON.stringify(body ?? raw));
    const err = (await res.json()) as { error: string; message: string };
    assert.is(err.error, 'invalid_request');
    assert.type(err.message, 'string');
  }
});

test('POST /api/webhooks answers 413 past the API body limit', async () => {
  const s = await startServer({ HOOKY_MAX_API_BODY_BYTES: '1024' });
  try {
    const res = await post(s.url, { id: uniqueId(), response: { body: 'x'.repeat(2000) } });
    assert.is(res.status, 413);
  } finally {
    await s.close();
  }
});

test('GET /api/webhooks/:id answers 404 not_found for an unknown id', async (ctx) => {
  const res = await fetch(`${ctx.s.url}/api/webhooks/${uniqueId()}`);
  assert.is(res.status, 404);
  assert.is(((await res.json()) as { error: string }).error, 'not_found');
});

test('GET /api/webhooks/:id/requests pages newest first, without duplicates or gaps', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const acks: string[] = [];
  for (let i = 0; i < 23; i++) acks.push(((await (await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: `${i}` })).json()) as { id: string }).id);
  const seen: string[] = [];
  let before: string | null = null;
  let pages = 0;
  do {
    const q: string = before ? `&before=${before}` : '';
    const page = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests?limit=5${q}`)).json()) as { requests: { id: string }[]; next: string | null };
    seen.push(...page.requests.map((r) => r.id));
    before = page.next;
    pages++;
  } while (before);
  assert.is(pages, 5);
  assert.equal(seen, [...acks].reverse());
  const all = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`)).json()) as { requests: unknown[]; next: null };
  assert.is(all.requests.length, 23);
  assert.is(all.next, null);
});

test('GET /api/webhooks/:id/requests validates limit and before', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'limit=-1', 'before=nope']) {
    const res = await fetch(`${ctx.s.url}/api/webhooks/${id}/requests?${q}`);
    assert.is(res.status, 400, q);
    assert.is(((await res.json()) as { error: string }).error, 'invalid_request');
  }
  // Given twice, which one was meant is a guess: refused, and said so.
  for (const q of ['limit=1&limit=2', 'before=a&before=b']) {
    const res = await fetch(`${ctx.s.url}/api/webhooks/${id}/requests?${q}`);
    assert.is(res.status, 400, q);
    assert.equal((await res.json()) as object, { error: 'invalid_request', message: `${q.split('=')[0]} may be given once` });
  }
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests?limit=1000`)).status, 200);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${uniqueId()}/requests`)).status, 404);
});

test('GET /api/webhooks/:id/requests/:requestId answers the payload or 404', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const ack = (await (await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'b' })).json()) as { id: string };
  const p = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${ack.id}`)).json()) as { id: string; body: string };
  assert.is(p.id, ack.id);
  assert.is(p.body, 'b');
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/not-an-id`)).status, 404);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/01a2153b-341c-7000-b66a-4af3afc8be3d`)).status, 404);
  const other = uniqueId();
  await post(ctx.s.url, { id: other });
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${other}/requests/${ack.id}`)).status, 404, 'scoped to its webhook');
});

type Listing = { requests: { id: string; body: string | null; method: string; path: string }[]; next: string | null };
const list = async (base: string, id: string, query: string): Promise<Listing> => {
  const res = await fetch(`${base}/api/webhooks/${id}/requests?${query}`);
  assert.is(res.status, 200, query);
  return (await res.json()) as Listing;
};
/** Follows `next` from the first page to the last and returns every id, in order. */
const every = async (base: string, id: string, query: string): Promise<string[]> => {
  const ids: string[] = [];
  let before: string | null = null;
  do {
    const page = await list(base, id, `${query}${before ? `&before=${before}` : ''}`);
    ids.push(...page.requests.map((r) => r.id));
    before = page.next;
  } while (before);
  return ids;
};

test('GET /api/webhooks/:id/requests?q= finds text in the body of a request far down the list, case-insensitively', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const needle = ((await (await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: '{"event":"Invoice.Paid","n":1}' })).json()) as { id: string }).id;
  for (let i = 0; i < 30; i++) await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: `{"event":"other","n":${i}}` });
  const page = await list(ctx.s.url, id, 'limit=5&q=invoice.PAID');
  assert.equal(page.requests.map((r) => r.id), [needle]);
  assert.is(page.next, null);
  assert.is((await list(ctx.s.url, id, 'q=nowhere')).requests.length, 0);
});

test('GET /api/webhooks/:id/requests filters by method, path and header, each given part matching', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const send = async (method: string, path: string, headers: Record<string, string> = {}) =>
    ((await (await fetch(`${ctx.s.url}/h/${id}${path}`, { method, headers, body: method === 'GET' ? null : 'x' })).json()) as { id: string }).id;
  const a = await send('POST', '/orders/42?x=1', { 'X-GitHub-Event': 'push' });
  const b = await send('PUT', '/Orders/43', { 'x-github-event': 'issues' });
  const c = await send('GET', '/health');
  const d = await send('POST', '/v1/orders', { 'content-type': 'application/json' });
  assert.equal((await list(ctx.s.url, id, 'method=post')).requests.map((r) => r.id), [d, a], 'method, case-insensitive');
  assert.equal((await list(ctx.s.url, id, 'path=orders')).requests.map((r) => r.id), [d, b, a], 'path: a substring, case-insensitive');
  assert.equal((await list(ctx.s.url, id, 'path=%2Fhealth')).requests.map((r) => r.id), [c]);
  assert.equal((await list(ctx.s.url, id, 'header=X-GitHub-Event')).requests.map((r) => r.id), [b, a], 'header by name');
  assert.equal((await list(ctx.s.url, id, 'header=x-github-event:PUS')).requests.map((r) => r.id), [a], 'name:value substring');
  assert.equal((await list(ctx.s.url, id, 'method=POST&path=orders&header=content-type:json')).requests.map((r) => r.id), [d], 'all of them');
  assert.equal((await list(ctx.s.url, id, 'q=&path=')).requests.length, 4, 'empty values filter nothing');
});

test('GET /api/webhooks/:id/requests?q= matches the decoded bytes of a binary body', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const bin = ((await (await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: Buffer.from([0xff, 0xfe, ...Buffer.from('Magic'), 0x00]) })).json()) as { id: string }).id;
  await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'magic in text' });
  const page = await list(ctx.s.url, id, 'q=Magic');
  assert.is(page.requests.length, 2);
  assert.is(page.requests[1]!.id, bin);
  assert.equal((await list(ctx.s.url, id, 'q=magic')).requests.length, 1, 'binary bodies are matched byte for byte');
});

test('GET /api/webhooks/:id/requests pages a filtered listing newest first without duplicates or gaps', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const hits: string[] = [];
  for (let i = 0; i < 20; i++) {
    const ack = (await (await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: i % 2 ? `hit ${i}` : `miss ${i}` })).json()) as { id: string };
    if (i % 2) hits.push(ack.id);
  }
  assert.equal(await every(ctx.s.url, id, 'limit=3&q=hit'), [...hits].reverse());
});

test('GET /api/webhooks/:id/requests answers 400 invalid_request on a bad filter', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  for (const q of ['method=PO%20ST', 'method=' + 'A'.repeat(33), 'header=bad%20name', 'header=:value', 'q=a%00b', 'q=a&q=b', `q=${'x'.repeat(1025)}`, 'path=a&path=b']) {
    const res = await fetch(`${ctx.s.url}/api/webhooks/${id}/requests?${q}`);
    assert.is(res.status, 400, q);
    assert.is(((await res.json()) as { error: string }).error, 'invalid_request');
  }
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${uniqueId()}/requests?q=x`)).status, 404);
});

test('GET /api/webhooks/:id/requests no longer lists a deleted request', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(((await (await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: `${i}` })).json()) as { id: string }).id);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${ids[1]}`, { method: 'DELETE' })).status, 204);
  assert.equal(await every(ctx.s.url, id, 'limit=2'), [ids[3], ids[2], ids[0]]);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`, { method: 'DELETE' })).status, 204);
  assert.equal(await every(ctx.s.url, id, 'limit=2'), []);
});

test('DELETE /api/webhooks/:id answers 204, removes its requests, and the id then 404s', async (ctx) => {
  const id = uniqueId();
  await post(ctx.s.url, { id });
  await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'x' });
  const res = await fetch(`${ctx.s.url}/api/webhooks/${id}`, { method: 'DELETE' });
  assert.is(res.status, 204);
  assert.is(await res.text(), '');
  const [{ n }] = (await ctx.sql`select count(*)::int as n from requests where webhook_id = ${id}`) as unknown as [{ n: number }];
  assert.is(n, 0);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`)).status, 404);
  assert.is((await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST' })).status, 404, 'capture no longer accepted');
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`, { method: 'DELETE' })).status, 404);
});

test('unknown routes answer 404 JSON and wrong methods 405', async (ctx) => {
  const r1 = await fetch(`${ctx.s.url}/nope`);
  assert.is(r1.status, 404);
  assert.is(((await r1.json()) as { error: string }).error, 'not_found');
  assert.is((await fetch(`${ctx.s.url}/api/nothing`)).status, 404);
  const r2 = await fetch(`${ctx.s.url}/api/webhooks`, { method: 'PUT' });
  assert.is(r2.status, 405);
  assert.is(((await r2.json()) as { error: string }).error, 'method_not_allowed');
  assert.is(r2.headers.get('allow'), 'GET, POST', 'a 405 names the allowed methods (RFC 9110 §15.5.6)');
  const r3 = await fetch(`${ctx.s.url}/api/webhooks/x`, { method: 'PUT' });
  assert.is(r3.status, 405);
  assert.is(r3.headers.get('allow'), 'GET, DELETE');
});

test.run();

// --- HOOKY_MAX_WEBHOOKS --------------------------------------------------------------------

// The limit counts every webhook in the database: these tests get one of their own.
const limit = suite<{ s: TestServer; db: Awaited<ReturnType<typeof scratchDatabase>> }>('REST API: HOOKY_MAX_WEBHOOKS', {} as never);
limit.before(async (ctx) => {
  ctx.db = await scratchDatabase();
  ctx.s = await startServer({ DATABASE_URL: ctx.db.url, HOOKY_MAX_WEBHOOKS: '5' });
});
limit.after(async (ctx) => {
  await ctx.s.close();
  await ctx.db.drop();
});

limit('concurrent creates stop at the limit: exactly that many get 201, the rest 409 too_many_webhooks; a delete makes room', async (ctx) => {
  const answers = await Promise.all(Array.from({ length: 12 }, () => post(ctx.s.url)));
  const bodies = (await Promise.all(answers.map((r) => r.json()))) as { id?: string; error?: string; message?: string }[];
  assert.is(answers.filter((r) => r.status === 201).length, 5);
  const refused = bodies.filter((_, i) => answers[i]!.status === 409);
  assert.is(refused.length, 7);
  for (const b of refused) {
    assert.is(b.error, 'too_many_webhooks');
    assert.match(b.message!, 'HOOKY_MAX_WEBHOOKS');
  }
  // A taken id at the limit is still a conflict: the more precise answer.
  const taken = bodies.find((b) => b.id !== undefined)!.id!;
  const dup = await post(ctx.s.url, { id: taken });
  assert.is(dup.status, 409);
  assert.is(((await dup.json()) as { error: string }).error, 'conflict');
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${taken}`, { method: 'DELETE' })).status, 204);
  assert.is((await post(ctx.s.url, { id: uniqueId('room') })).status, 201);
  assert.is((await post(ctx.s.url)).status, 409);
});

limit.run();
