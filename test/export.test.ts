import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { pageBytes } from '../src/export.js';
import { newRequestId } from '../src/ids.js';
import { buildPayload } from '../src/payload.js';
import { createStore } from '../src/store.js';
import { testDatabaseUrl } from './support/db.js';
import { http } from './support/http.js';
import { spawnMain } from './support/process.js';
import { createWebhook, startServer, type TestServer } from './support/server.js';

const test = suite<{ s: TestServer }>('export', {} as never);

test.before(async (ctx) => {
  ctx.s = await startServer();
});
test.after(async (ctx) => {
  await ctx.s.close();
});

interface Har {
  log: {
    version: string;
    creator: { name: string; version: string };
    entries: {
      startedDateTime: string;
      request: {
        method: string;
        url: string;
        httpVersion: string;
        headers: { name: string; value: string }[];
        queryString: { name: string; value: string }[];
        cookies: { name: string; value: string }[];
        postData?: { mimeType: string; text: string; _encoding?: string };
        bodySize: number;
      };
      response: { status: number; headers: { name: string; value: string }[]; content: { size: number; mimeType: string; text: string } };
      _requestId: string;
    }[];
  };
}

async function capture(base: string, path: string, body: Buffer | string | undefined, headers: Record<string, string> = {}) {
  const res = await http(body === undefined ? 'GET' : 'POST', `${base}${path}`, body, headers);
  assert.is(res.status < 300, true, res.text);
  return res;
}

test('GET /api/webhooks/:id/export?format=ndjson streams every payload, one per line, oldest first, as an attachment', async (ctx) => {
  const w = await createWebhook(ctx.s.url);
  for (let i = 0; i < 5; i++) await capture(ctx.s.url, `/h/${w.id}/n${i}`, `line ${i}\nwith a newline`);
  const res = await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export?format=ndjson`);
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-type'), 'application/x-ndjson; charset=utf-8');
  assert.is(res.headers.get('content-disposition'), `attachment; filename="hooky-${w.id}.ndjson"`);
  const text = await res.text();
  assert.ok(text.endsWith('\n'));
  const lines = text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as { path: string; body: string });
  assert.equal(lines.map((l) => l.path), ['/n0', '/n1', '/n2', '/n3', '/n4']);
  assert.is(lines[2]!.body, 'line 2\nwith a newline');
  // The very objects the listing answers.
  const listed = (await (await fetch(`${ctx.s.url}/api/webhooks/${w.id}/requests`)).json()) as { requests: unknown[] };
  assert.equal(lines, [...listed.requests].reverse());
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export`)).headers.get('content-type'), 'application/x-ndjson; charset=utf-8', 'ndjson by default');
});

test('GET /api/webhooks/:id/export?format=har is HAR 1.2 with each request as an entry and the webhook response as its response', async (ctx) => {
  const w = await createWebhook(ctx.s.url, { response: { status: 201, headers: { 'X-Reply': 'yes' }, body: 'thanks' } });
  await capture(ctx.s.url, `/h/${w.id}/orders/42?x=1&tag=a&tag=b`, '{"amount":100}', { 'content-type': 'application/json', cookie: 'a=1; b=two' });
  const binary = Buffer.from([0xff, 0x00, 0xfe]);
  await capture(ctx.s.url, `/h/${w.id}`, binary, { 'content-type': 'application/octet-stream' });
  await capture(ctx.s.url, `/h/${w.id}/empty`, undefined);
  const res = await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export?format=har`);
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-disposition'), `attachment; filename="hooky-${w.id}.har"`);
  const har = (await res.json()) as Har;
  assert.is(har.log.version, '1.2');
  assert.is(har.log.creator.name, 'hooky');
  assert.is(har.log.creator.version, (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version);
  assert.is(har.log.entries.length, 3);
  const [json, bin, empty] = har.log.entries;
  assert.is(json!.request.method, 'POST');
  assert.is(json!.request.url, `http://localhost:${ctx.s.server.port}/h/${w.id}/orders/42?x=1&tag=a&tag=b`);
  assert.is(json!.request.httpVersion, 'HTTP/1.1');
  assert.equal(json!.request.queryString, [
    { name: 'x', value: '1' },
    { name: 'tag', value: 'a' },
    { name: 'tag', value: 'b' },
  ]);
  assert.ok(json!.request.headers.some((h) => h.name === 'content-type' && h.value === 'application/json'));
  assert.equal(json!.request.cookies, [
    { name: 'a', value: '1' },
    { name: 'b', value: 'two' },
  ]);
  assert.equal(json!.request.postData, { mimeType: 'application/json', text: '{"amount":100}' });
  assert.is(json!.request.bodySize, 14);
  assert.ok(!Number.isNaN(Date.parse(json!.startedDateTime)));
  assert.is(json!.response.status, 201);
  assert.ok(json!.response.headers.some((h) => h.name === 'x-reply' && h.value === 'yes'));
  assert.equal(json!.response.content, { size: 6, mimeType: 'text/plain; charset=utf-8', text: 'thanks' });
  assert.equal(bin!.request.postData, { mimeType: 'application/octet-stream', text: binary.toString('base64'), _encoding: 'base64' });
  assert.ok(Buffer.from(bin!.request.postData!.text, 'base64').equals(binary));
  assert.is(empty!.request.postData, undefined);
  assert.is(empty!.request.method, 'GET');

  const plain = await createWebhook(ctx.s.url);
  const ack = JSON.parse((await capture(ctx.s.url, `/h/${plain.id}`, 'x')).text) as { id: string };
  const entry = ((await (await fetch(`${ctx.s.url}/api/webhooks/${plain.id}/export?format=har`)).json()) as Har).log.entries[0]!;
  assert.is(entry._requestId, ack.id);
  assert.is(entry.response.status, 200);
  assert.equal(entry.response.content, { size: Buffer.byteLength(`{"ok":true,"id":"${ack.id}"}`), mimeType: 'application/json', text: `{"ok":true,"id":"${ack.id}"}` });

  const none = await createWebhook(ctx.s.url);
  assert.equal(((await (await fetch(`${ctx.s.url}/api/webhooks/${none.id}/export?format=har`)).json()) as Har).log.entries, []);
  assert.is(await (await fetch(`${ctx.s.url}/api/webhooks/${none.id}/export`)).text(), '', 'an empty ndjson export');
});

test('an export larger than a page arrives whole, in order, once', async (ctx) => {
  const w = await createWebhook(ctx.s.url);
  // Each body a third of a page: several pages, each cut by bytes rather than rows.
  const n = 10;
  for (let i = 0; i < n; i++) await capture(ctx.s.url, `/h/${w.id}/${i}`, `${i}:`.padEnd(Math.floor(pageBytes / 3), 'x'));
  const lines = (await (await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export`)).text()).trim().split('\n');
  assert.equal(lines.map((l) => (JSON.parse(l) as { path: string }).path), Array.from({ length: n }, (_, i) => `/${i}`));
  const har = (await (await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export?format=har`)).json()) as Har;
  assert.is(har.log.entries.length, n);
  // A client that leaves mid-export: the server stops, and goes on serving.
  const socket = connect(ctx.s.server.port, '127.0.0.1');
  socket.write(`GET /api/webhooks/${w.id}/export HTTP/1.1\r\nhost: x\r\n\r\n`);
  await new Promise((r) => socket.once('data', r));
  socket.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export?format=har`)).status, 200);
});

test('GET /api/webhooks/:id/export answers 400 on a bad format, 404 for an unknown webhook, 401 without the token', async (ctx) => {
  const w = await createWebhook(ctx.s.url);
  const bad = await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export?format=csv`);
  assert.is(bad.status, 400);
  assert.is(((await bad.json()) as { error: string }).error, 'invalid_request');
  const twice = await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export?format=ndjson&format=har`);
  assert.equal([twice.status, await twice.json()], [400, { error: 'invalid_request', message: 'format may be given once' }]);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/nope-${w.id}/export`)).status, 404);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${w.id}/export`, { method: 'POST' })).status, 405);
  const token = 'export-token-0123456789';
  const s = await startServer({ HOOKY_API_TOKEN: token });
  try {
    assert.is((await fetch(`${s.url}/api/webhooks/${w.id}/export`)).status, 401);
    assert.is((await fetch(`${s.url}/api/webhooks/${w.id}/export`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  } finally {
    await s.close();
  }
});

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const MiB = 1024 * 1024;

test('a large export to a client that stops reading is held back, not buffered by the server', async () => {
  const url = await testDatabaseUrl();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const store = createStore(sql);
  const server = await spawnMain({ DATABASE_URL: url });
  const webhookId = `export-big-${Date.now()}`;
  const rows = 384;
  const body = Buffer.alloc(256 * 1024, 'a');
  try {
    await store.createWebhook(webhookId, null);
    // 96 MiB of payloads, stored straight through the store (captures would take minutes).
    for (let b = 0; b < rows / 16; b++) {
      const batch = Array.from({ length: 16 }, () => {
        const id = newRequestId();
        const facts = { method: 'POST', path: '/', headers: {}, rawQuery: '', sourceIp: '127.0.0.1' };
        return { id, webhookId, json: buildPayload(id, webhookId, facts, body, new Date()).json };
      });
      await store.insertRequests(batch);
    }
    const total = rows * (body.length + 200);
    const before = rssOf(server.child.pid!);

    // A client that sends the request and then does not read.
    const socket = connect(server.port, '127.0.0.1');
    socket.pause();
    let received = 0;
    let head = '';
    socket.on('data', (d: Buffer) => {
      if (received === 0) head = d.subarray(0, 200).toString('latin1');
      received += d.length;
    });
    socket.write(`GET /api/webhooks/${webhookId}/export HTTP/1.1\r\nhost: x\r\n\r\n`);
    // Until the server's RSS stops moving: the export has filled what the kernel and uWS hold.
    let last = 0;
    let peak = before;
    for (let stable = 0; stable < 4; ) {
      await new Promise((r) => setTimeout(r, 250));
      const now = rssOf(server.child.pid!);
      peak = Math.max(peak, now);
      stable = Math.abs(now - last) < 1 * MiB ? stable + 1 : 0;
      last = now;
    }
    const growth = peak - before;
    if (process.env.HOOKY_TEST_FIGURES) console.log(`export: ${(total / MiB).toFixed(0)} MiB export, server RSS +${(growth / MiB).toFixed(1)} MiB while the client did not read`);
    assert.ok(growth < total / 3, `server RSS grew by ${(growth / MiB).toFixed(1)} MiB for a ${(total / MiB).toFixed(0)} MiB export`);

    // Reading again, the client gets all of it.
    // The end of a chunked body, which may arrive split across reads.
    let tail = '';
    const done = new Promise<void>((resolve) =>
      socket.on('data', (d: Buffer) => {
        tail = (tail + d.subarray(-16).toString('latin1')).slice(-16);
        if (tail.endsWith('\r\n0\r\n\r\n')) resolve();
      }),
    );
    socket.resume();
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`export not finished after 60 s: ${received} bytes; ${head}`)), 60_000).unref());
    await Promise.race([done, timeout]);
    assert.match(head, /^HTTP\/1\.1 200 /, head);
    socket.destroy();
    assert.ok(received > rows * body.length, `received ${received} bytes`);
  } finally {
    await store.deleteWebhook(webhookId);
    await sql.end();
    server.child.kill('SIGTERM');
    await server.exited;
  }
});

test.run();
