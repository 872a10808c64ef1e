import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newRequestId } from '../src/ids.js';
import { createStore } from '../src/store.js';
import { testDatabaseUrl } from './support/db.js';
import { createWebhook, startServer, uniqueId, type TestServer } from './support/server.js';

const test = suite<{ s: TestServer; sql: postgres.Sql }>('DELETE requests', {} as never);

test.before(async (ctx) => {
  // Batches of 3 rows, so deleting a dozen takes several statements.
  ctx.s = await startServer({ HOOKY_RETENTION_BATCH: '3' });
  ctx.sql = postgres(await testDatabaseUrl(), { max: 2, onnotice: () => {} });
});
test.after(async (ctx) => {
  await ctx.s.close();
  await ctx.sql.end();
});

const capture = async (base: string, id: string, body: string) =>
  ((await (await fetch(`${base}/h/${id}`, { method: 'POST', body })).json()) as { id: string }).id;
const count = async (sql: postgres.Sql, id: string) =>
  ((await sql`select count(*)::int as n from requests where webhook_id = ${id}`) as unknown as [{ n: number }])[0].n;
const batches = async (sql: postgres.Sql, id: string) =>
  ((await sql`select count(*)::int as n from request_batches where webhook_id = ${id}`) as unknown as [{ n: number }])[0].n;

test('DELETE /api/webhooks/:id/requests/:requestId answers 204 and removes only that request', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const a = await capture(ctx.s.url, id, 'a');
  const b = await capture(ctx.s.url, id, 'b');
  const res = await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${a}`, { method: 'DELETE' });
  assert.is(res.status, 204);
  assert.is(await res.text(), '');
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${a}`)).status, 404);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${b}`)).status, 200);
  const page = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`)).json()) as { requests: { id: string }[] };
  assert.equal(page.requests.map((r) => r.id), [b]);
});

test('DELETE /api/webhooks/:id/requests/:requestId answers 404 for an unknown request, webhook or another webhook\'s request', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const other = await createWebhook(ctx.s.url);
  const theirs = await capture(ctx.s.url, other.id, 'x');
  for (const path of [
    `/api/webhooks/${id}/requests/${theirs}`,
    `/api/webhooks/${id}/requests/not-an-id`,
    `/api/webhooks/${id}/requests/01a2153b-341c-7000-b66a-4af3afc8be3d`,
    `/api/webhooks/${uniqueId()}/requests/${theirs}`,
  ]) {
    const res = await fetch(`${ctx.s.url}${path}`, { method: 'DELETE' });
    assert.is(res.status, 404, path);
    assert.is(((await res.json()) as { error: string }).error, 'not_found');
  }
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${other.id}/requests/${theirs}`)).status, 200, 'still there');
});

test('DELETE /api/webhooks/:id/requests deletes every request of that webhook in batches, and no other', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const other = await createWebhook(ctx.s.url);
  for (let i = 0; i < 13; i++) await capture(ctx.s.url, id, `${i}`);
  const kept = await capture(ctx.s.url, other.id, 'kept');
  const res = await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`, { method: 'DELETE' });
  assert.is(res.status, 204);
  assert.is(await count(ctx.sql, id), 0);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${other.id}/requests/${kept}`)).status, 200);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`)).status, 200, 'the webhook stays');
  assert.is((await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'after' })).status, 200, 'and captures again');
  assert.is(await count(ctx.sql, id), 1);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`, { method: 'DELETE' })).status, 204, 'again');
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`, { method: 'DELETE' })).status, 204, 'on none');
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${uniqueId()}/requests`, { method: 'DELETE' })).status, 404);
});

test('DELETE on the request routes needs the API token when one is set', async () => {
  const token = 'deletion-token-0123456789';
  const s = await startServer({ HOOKY_API_TOKEN: token });
  try {
    const auth = { authorization: `Bearer ${token}` };
    const { id } = (await (await fetch(`${s.url}/api/webhooks`, { method: 'POST', headers: auth, body: '{}' })).json()) as { id: string };
    const rid = await capture(s.url, id, 'x');
    assert.is((await fetch(`${s.url}/api/webhooks/${id}/requests/${rid}`, { method: 'DELETE' })).status, 401);
    assert.is((await fetch(`${s.url}/api/webhooks/${id}/requests`, { method: 'DELETE' })).status, 401);
    assert.is((await fetch(`${s.url}/api/webhooks/${id}/requests/${rid}`, { headers: auth })).status, 200);
    assert.is((await fetch(`${s.url}/api/webhooks/${id}/requests`, { method: 'DELETE', headers: auth })).status, 204);
    assert.is((await fetch(`${s.url}/api/webhooks/${id}/requests/${rid}`, { headers: auth })).status, 404);
  } finally {
    await s.close();
  }
});

test('deleting all requests deletes the batch rows left empty; deleting one keeps its batch row, so a resume from it stays exact', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  // One batch of two rows, straight through the store, then captures (a batch each, or a few).
  const pair = [newRequestId(), newRequestId()];
  await createStore(ctx.sql).insertRequests(pair.map((rid) => ({ id: rid, webhookId: id, json: JSON.stringify({ id: rid }) })));
  const del = (path: string) => fetch(`${ctx.s.url}/api/webhooks/${id}/requests${path}`, { method: 'DELETE' });
  assert.is((await del(`/${pair[0]}`)).status, 204);
  assert.is((await del(`/${pair[1]}`)).status, 204);
  assert.is(await batches(ctx.sql, id), 1, 'its batch row stays, emptied');

  for (let i = 0; i < 10; i++) await capture(ctx.s.url, id, `${i}`);
  assert.ok((await batches(ctx.sql, id)) > 0);
  assert.is((await del('')).status, 204);
  // Every batch row it emptied goes; the one emptied by the single deletions above stays.
  assert.equal([await count(ctx.sql, id), await batches(ctx.sql, id)], [0, 1], 'all of them, over several statements');
  // The webhook's history goes on where it was.
  const after = await capture(ctx.s.url, id, 'after');
  const [row] = await ctx.sql<{ position: string }[]>`select position::text as position from request_batches where webhook_id = ${id} and last_id = ${after}::uuid`;
  assert.ok(Number(row!.position) > 1);
});

test('PUT on the request routes answers 405 naming GET and DELETE', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const res = await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`, { method: 'PUT' });
  assert.is(res.status, 405);
  assert.is(((await res.json()) as { allow: string }).allow, 'GET, DELETE');
});

test.run();
