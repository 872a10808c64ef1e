import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { excerptBytes } from '../src/resend.js';
import { http } from './support/http.js';
import { createWebhook, startServer, type TestServer } from './support/server.js';

interface Received {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A local HTTP target recording what reaches it; `answer` decides the reply. */
async function target(answer: (req: IncomingMessage, res: ServerResponse) => void = (_q, r) => r.end('ok')) {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
      answer(req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    received,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}
type Target = Awaited<ReturnType<typeof target>>;

const test = suite<{ s: TestServer; ok: Target; slow: Target; redirect: Target; big: Target; other: Target }>('resend', {} as never);

test.before(async (ctx) => {
  ctx.ok = await target((_req, res) => {
    res.setHeader('x-target', 'yes');
    res.statusCode = 201;
    res.end('{"received":true}');
  });
  ctx.slow = await target(() => {}); // never answers
  ctx.redirect = await target((_req, res) => {
    res.statusCode = 302;
    res.setHeader('location', `${ctx.other.origin}/elsewhere`);
    res.end();
  });
  ctx.big = await target((_req, res) => res.end(Buffer.alloc(excerptBytes * 4, 'é')));
  ctx.other = await target();
  ctx.s = await startServer({
    HOOKY_RESEND_ALLOW: [ctx.ok.origin, ctx.slow.origin, ctx.redirect.origin, ctx.big.origin].join(','),
    HOOKY_RESEND_TIMEOUT_MS: '300',
  });
});
test.after(async (ctx) => {
  await ctx.s.close();
  for (const t of [ctx.ok, ctx.slow, ctx.redirect, ctx.big, ctx.other]) await t.close();
});

async function captured(s: TestServer, path: string, body: Buffer | string, headers: Record<string, string> = {}) {
  const w = await createWebhook(s.url);
  // node:http, not fetch: fetch refuses to send a Connection header.
  const res = await http('POST', `${s.url}/h/${w.id}${path}`, body, headers);
  assert.is(res.status, 200);
  return { webhookId: w.id, requestId: (JSON.parse(res.text) as { id: string }).id };
}
const resend = (s: TestServer, c: { webhookId: string; requestId: string }, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.url}/api/webhooks/${c.webhookId}/requests/${c.requestId}/resend`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

test('resend sends method, sub-path, query, headers less hop-by-hop and the exact body bytes, and answers what came back', async (ctx) => {
  const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0xc3]);
  const c = await captured(ctx.s, '/orders/42?x=1&tag=a&tag=b', bytes, {
    'content-type': 'application/octet-stream',
    'stripe-signature': 't=1,v1=abc',
    connection: 'keep-alive, x-private',
    'x-private': 'hop',
  });
  const res = await resend(ctx.s, c, { url: `${ctx.ok.origin}/base/` });
  assert.is(res.status, 200);
  const r = (await res.json()) as { status: number; headers: Record<string, string>; body: string; bodyEncoding: string; durationMs: number; truncated: boolean; url: string };
  assert.is(r.status, 201);
  assert.is(r.headers['x-target'], 'yes');
  assert.is(r.body, '{"received":true}');
  assert.is(r.bodyEncoding, 'utf8');
  assert.is(r.truncated, false);
  assert.type(r.durationMs, 'number');
  assert.is(r.url, `${ctx.ok.origin}/base/orders/42?x=1&tag=a&tag=b`);
  const got = ctx.ok.received.at(-1)!;
  assert.is(got.method, 'POST');
  assert.is(got.url, '/base/orders/42?x=1&tag=a&tag=b');
  assert.ok(got.body.equals(bytes), 'byte-exact body');
  assert.is(got.headers['stripe-signature'], 't=1,v1=abc');
  assert.is(got.headers['content-type'], 'application/octet-stream');
  assert.is(got.headers['content-length'], String(bytes.length));
  assert.is(got.headers['x-private'], undefined, 'named by Connection: hop-by-hop');
  assert.is(got.headers.host, new URL(ctx.ok.origin).host);
});

test('resend sends the captured query and the target\'s own query byte for byte, as they arrived', async (ctx) => {
  const c = await captured(ctx.s, '/q?sp=a+b&t=a%20b~&e=', 'x');
  const r = (await (await resend(ctx.s, c, { url: `${ctx.ok.origin}/in?k=a%20b` })).json()) as { url: string };
  assert.is(r.url, `${ctx.ok.origin}/in/q?k=a%20b&sp=a+b&t=a%20b~&e=`);
  assert.is(ctx.ok.received.at(-1)!.url, '/in/q?k=a%20b&sp=a+b&t=a%20b~&e=');
});

test('resend is off without HOOKY_RESEND_ALLOW: 403 resend_disabled, nothing sent', async (ctx) => {
  const s = await startServer();
  try {
    const c = await captured(s, '/', 'x');
    const before = ctx.ok.received.length;
    const res = await resend(s, c, { url: ctx.ok.origin });
    assert.is(res.status, 403);
    assert.is(((await res.json()) as { error: string }).error, 'resend_disabled');
    assert.is(ctx.ok.received.length, before);
  } finally {
    await s.close();
  }
});

test('resend refuses an origin HOOKY_RESEND_ALLOW does not list with 403 forbidden_target, sending nothing', async (ctx) => {
  const c = await captured(ctx.s, '/', 'x');
  const port = new URL(ctx.ok.origin).port;
  for (const url of [ctx.other.origin, `http://localhost:${port}/`, `https://127.0.0.1:${port}/`, 'http://169.254.169.254/latest/meta-data']) {
    const res = await resend(ctx.s, c, { url });
    assert.is(res.status, 403, url);
    const err = (await res.json()) as { error: string; origin: string };
    assert.is(err.error, 'forbidden_target', url);
  }
  assert.is(ctx.other.received.length, 0);
});

test('resend does not follow a redirect: the 3xx is the answer', async (ctx) => {
  const c = await captured(ctx.s, '/', 'x');
  const res = await resend(ctx.s, c, { url: ctx.redirect.origin });
  assert.is(res.status, 200);
  const r = (await res.json()) as { status: number; headers: Record<string, string>; body: null };
  assert.is(r.status, 302);
  assert.is(r.headers.location, `${ctx.other.origin}/elsewhere`);
  assert.is(r.body, null);
  assert.is(ctx.other.received.length, 0);
});

test('resend answers 504 target_timeout when the target does not answer in time', async (ctx) => {
  const c = await captured(ctx.s, '/', 'x');
  const res = await resend(ctx.s, c, { url: ctx.slow.origin });
  assert.is(res.status, 504);
  assert.is(((await res.json()) as { error: string }).error, 'target_timeout');
});

test('resend answers 502 target_unreachable when nothing listens at an allowed origin', async () => {
  const gone = await target();
  await gone.close();
  const s = await startServer({ HOOKY_RESEND_ALLOW: gone.origin });
  try {
    const res = await resend(s, await captured(s, '/', 'x'), { url: gone.origin });
    assert.is(res.status, 502);
    assert.is(((await res.json()) as { error: string }).error, 'target_unreachable');
  } finally {
    await s.close();
  }
});

test('resend reads at most the excerpt of a large answer, cut on a character boundary', async (ctx) => {
  const c = await captured(ctx.s, '/', 'x');
  const r = (await (await resend(ctx.s, c, { url: ctx.big.origin })).json()) as { body: string; bodyEncoding: string; truncated: boolean; size: number };
  assert.is(r.truncated, true);
  assert.is(r.size, excerptBytes);
  assert.is(r.bodyEncoding, 'utf8');
  assert.ok(Buffer.byteLength(r.body) <= excerptBytes && Buffer.byteLength(r.body) >= excerptBytes - 3);
  assert.match(r.body, /^é+$/);
});

test('resend answers 400 on a bad body and 404 for an unknown request', async (ctx) => {
  const c = await captured(ctx.s, '/', 'x');
  for (const body of ['{nope', '{}', JSON.stringify({ url: 'ftp://x/' }), JSON.stringify({ url: 'not a url' }), JSON.stringify({ url: `http://u:p@${new URL(ctx.ok.origin).host}/` }), JSON.stringify({ url: ctx.ok.origin, extra: 1 })]) {
    const res = await resend(ctx.s, c, body);
    assert.is(res.status, 400, body);
    assert.is(((await res.json()) as { error: string }).error, 'invalid_request');
  }
  const unknown = { webhookId: c.webhookId, requestId: '01a2153b-341c-7000-b66a-4af3afc8be3d' };
  assert.is((await resend(ctx.s, unknown, { url: ctx.ok.origin })).status, 404);
  assert.is((await resend(ctx.s, { webhookId: 'nope-nope', requestId: c.requestId }, { url: ctx.ok.origin })).status, 404);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${c.webhookId}/requests/${c.requestId}/resend`)).status, 405);
  // text/plain is what a cross-site form or a no-preflight fetch can send.
  const before = ctx.ok.received.length;
  const plain = await fetch(`${ctx.s.url}/api/webhooks/${c.webhookId}/requests/${c.requestId}/resend`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: JSON.stringify({ url: ctx.ok.origin }),
  });
  assert.is(plain.status, 400);
  assert.match(((await plain.json()) as { message: string }).message, /application\/json/);
  assert.is(ctx.ok.received.length, before);
});

test('resend needs the API token when one is set', async (ctx) => {
  const token = 'resend-token-0123456789';
  const s = await startServer({ HOOKY_API_TOKEN: token, HOOKY_RESEND_ALLOW: ctx.ok.origin });
  try {
    const auth = { authorization: `Bearer ${token}` };
    const w = (await (await fetch(`${s.url}/api/webhooks`, { method: 'POST', headers: auth, body: '{}' })).json()) as { id: string };
    const ack = (await (await fetch(`${s.url}/h/${w.id}`, { method: 'POST', body: 'x' })).json()) as { id: string };
    const c = { webhookId: w.id, requestId: ack.id };
    const before = ctx.ok.received.length;
    assert.is((await resend(s, c, { url: ctx.ok.origin })).status, 401);
    assert.is(ctx.ok.received.length, before);
    assert.is((await resend(s, c, { url: ctx.ok.origin }, auth)).status, 200);
    assert.is(ctx.ok.received.length, before + 1);
  } finally {
    await s.close();
  }
});

test.run();
