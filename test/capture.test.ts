import { connect } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import postgres from 'postgres';
import { testDatabaseUrl } from './support/db.js';
import { metric } from './support/observe.js';
import { createWebhook, startServer, uniqueId, type TestServer } from './support/server.js';

const test = suite<{ s: TestServer; sql: postgres.Sql }>('capture', {} as never);

test.before(async (ctx) => {
  ctx.s = await startServer({ HOOKY_MAX_BODY_BYTES: String(64 * 1024) });
  ctx.sql = postgres(await testDatabaseUrl(), { max: 2, onnotice: () => {} });
});
test.after(async (ctx) => {
  await ctx.s.close();
  await ctx.sql.end();
});

const rows = async (sql: postgres.Sql, webhookId: string) =>
  Number((await sql`select count(*)::int as n from requests where webhook_id = ${webhookId}`)[0]!.n);

/**
 * A raw HTTP/1.1 exchange, for what fetch will not send (odd methods, chunked bodies, repeated
 * headers). Resolves with the response once it is complete or the server closes the socket.
 */
function raw(port: number, request: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let out = '';
    const finish = () => {
      sock.destroy();
      resolve(out);
    };
    sock.on('data', (d) => {
      out += d.toString('latin1');
      if (responseComplete(out)) finish();
    });
    sock.on('close', finish);
    sock.on('error', reject);
    // write, not end: uWS treats a half-closed socket as gone and would not answer.
    sock.write(request);
  });
}

function responseComplete(out: string) {
  const end = out.indexOf('\r\n\r\n');
  const length = /content-length: (\d+)/i.exec(out);
  return end >= 0 && length !== null && out.length >= end + 4 + Number(length[1]);
}

test('POST /h/:id answers 200 {ok, id} only once the row is committed', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const res = await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: '{"a":1}' });
  assert.is(res.status, 200);
  const body = (await res.json()) as { ok: boolean; id: string };
  assert.is(body.ok, true);
  assert.match(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const [row] = await ctx.sql`select payload::text as p from requests where id = ${body.id}::uuid`;
  assert.is(JSON.parse(row!.p).body, '{"a":1}');
});

test('every standard method is captured, on /h/:id and on any sub-path', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'];
  for (const method of methods) {
    const res = await fetch(`${ctx.s.url}/h/${id}/a/b.json`, { method });
    assert.is(res.status, 200, method);
  }
  // A method fetch refuses to send, written by hand. (uWS 20.30's parser drops methods outside
  // the standard set, such as WebDAV's PROPFIND: a documented limitation.)
  const reply = await raw(ctx.s.server.port, `TRACE /h/${id}/dav HTTP/1.1\r\nhost: x\r\n\r\n`);
  assert.match(reply, /^HTTP\/1\.1 200/);
  const list = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`)).json()) as { requests: { method: string; path: string }[] };
  assert.equal(list.requests.map((r) => r.method).reverse(), [...methods, 'TRACE']);
  assert.equal(new Set(list.requests.map((r) => r.path)), new Set(['/a/b.json', '/dav']));
});

test('HEAD is answered with headers only, never a body', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const sock = connect(ctx.s.server.port, '127.0.0.1');
  let out = '';
  sock.on('data', (d) => (out += d.toString('latin1')));
  sock.write(`HEAD /h/${id} HTTP/1.1\r\nhost: x\r\n\r\n`);
  const end = Date.now() + 2000;
  while (!out.includes('\r\n\r\n') && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  sock.destroy();
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n[\s\S]*Content-Length: 55\r\n\r\n$/);
});

test('path is "/" with no sub-path, and keeps a trailing slash', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  await fetch(`${ctx.s.url}/h/${id}`);
  await fetch(`${ctx.s.url}/h/${id}/`);
  await fetch(`${ctx.s.url}/h/${id}/x/`);
  const list = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`)).json()) as { requests: { path: string }[] };
  assert.equal(list.requests.map((r) => r.path).reverse(), ['/', '/', '/x/']);
});

test('repeated headers are joined with ", "', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const reply = await raw(
    ctx.s.server.port,
    `POST /h/${id} HTTP/1.1\r\nhost: x\r\nx-tag: one\r\nX-Tag: two\r\ncontent-length: 2\r\n\r\nhi`,
  );
  const rid = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)).id;
  const p = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${rid}`)).json()) as { headers: Record<string, string> };
  assert.is(p.headers['x-tag'], 'one, two');
});

test('a chunked body is captured whole', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const reply = await raw(
    ctx.s.server.port,
    `POST /h/${id} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
  );
  assert.match(reply, /^HTTP\/1\.1 200/);
  const rid = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)).id;
  const p = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${rid}`)).json()) as { body: string; size: number };
  assert.is(p.body, 'hello world');
  assert.is(p.size, 11);
});

test('POST /h/:id answers 404 for an unknown webhook and stores nothing', async (ctx) => {
  const id = uniqueId('nope');
  const res = await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'x' });
  assert.is(res.status, 404);
  assert.equal(await res.json(), { error: 'not_found', message: 'Webhook not found' });
  assert.is(await rows(ctx.sql, id), 0);
  // Ids that cannot exist are 404 too, not 400.
  assert.is((await fetch(`${ctx.s.url}/h/-bad`)).status, 404);
  assert.is((await fetch(`${ctx.s.url}/h/${'x'.repeat(65)}`)).status, 404);
});

test('POST /h/:id answers 413 past the body limit, declared or streamed, and stores nothing', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const refusedBefore = (await metric(ctx.s.url, 'hooky_capture_errors_total{status="413"}')) || 0;
  const big = Buffer.alloc(64 * 1024 + 1, 'a');
  const res = await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: big });
  assert.is(res.status, 413);
  const body = (await res.json()) as { error: string; limit: number };
  assert.is(body.error, 'payload_too_large');
  assert.is(body.limit, 64 * 1024);
  // Chunked: no Content-Length to check up front; the limit is enforced as the bytes arrive.
  const chunk = Buffer.alloc(40 * 1024, 'b');
  const head = `POST /h/${id} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`;
  const part = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
  const reply = await raw(ctx.s.server.port, Buffer.concat([Buffer.from(head), part, part, Buffer.from('0\r\n\r\n')]));
  assert.match(reply, /^HTTP\/1\.1 413/);
  // Exactly at the limit is fine.
  assert.is((await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: big.subarray(1) })).status, 200);
  assert.is(await rows(ctx.sql, id), 1);
  // Both refusals are counted among the capture errors.
  assert.is(await metric(ctx.s.url, 'hooky_capture_errors_total{status="413"}'), refusedBefore + 2);
});

test('a custom response is answered after commit: status, headers, body and delay', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url, {
    response: { status: 202, headers: { 'X-Hooky': 'yes', 'Content-Type': 'application/xml' }, body: '<ok/>', delayMs: 150 },
  });
  const t0 = Date.now();
  const res = await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'x' });
  assert.ok(Date.now() - t0 >= 140, 'the delay is honoured');
  assert.is(res.status, 202);
  assert.is(res.headers.get('x-hooky'), 'yes');
  assert.is(res.headers.get('content-type'), 'application/xml');
  assert.is(await res.text(), '<ok/>');
  assert.is(await rows(ctx.sql, id), 1);
  const plain = await createWebhook(ctx.s.url, { response: { body: 'thanks' } });
  const r2 = await fetch(`${ctx.s.url}/h/${plain.id}`);
  assert.is(r2.status, 200);
  assert.is(r2.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.is(await r2.text(), 'thanks');
});

test('shutdown sends the answers still waiting out their delayMs: at their time, or at the shutdown deadline', async (ctx) => {
  for (const [delayMs, env] of [[600, {}], [30_000, { HOOKY_SHUTDOWN_TIMEOUT_MS: '300' }]] as const) {
    const s = await startServer(env);
    const { id } = await createWebhook(s.url, { response: { status: 202, body: 'later', delayMs } });
    const answer = fetch(`${s.url}/h/${id}`, { method: 'POST', body: 'x' }).then(async (r) => ({ status: r.status, body: await r.text() }), (e: Error) => e);
    // Stored, and waiting out its delay, when the shutdown starts.
    while ((await rows(ctx.sql, id)) === 0) await new Promise((r) => setTimeout(r, 20));
    await s.close();
    assert.equal(await answer, { status: 202, body: 'later' }, `delayMs ${delayMs}`);
  }
});

test('sourceIp ignores X-Forwarded-For unless proxies are trusted', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const r1 = (await (await fetch(`${ctx.s.url}/h/${id}`, { headers: { 'x-forwarded-for': '203.0.113.9' } })).json()) as { id: string };
  const p1 = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${r1.id}`)).json()) as { sourceIp: string };
  assert.is(p1.sourceIp, '127.0.0.1');
  const sourceIp = async (base: string, xff: string) => {
    const r = (await (await fetch(`${base}/h/${id}`, { headers: { 'x-forwarded-for': xff } })).json()) as { id: string };
    return ((await (await fetch(`${base}/api/webhooks/${id}/requests/${r.id}`)).json()) as { sourceIp: string }).sourceIp;
  };
  // One proxy that appends: the right-most entry is the one it wrote; what the sender put
  // before it is not believed.
  const one = await startServer({ HOOKY_TRUST_PROXY: 'true' });
  const two = await startServer({ HOOKY_TRUST_PROXY: '2' });
  try {
    assert.is(await sourceIp(one.url, 'forged-by-sender, 203.0.113.9'), '203.0.113.9');
    assert.is(await sourceIp(one.url, '203.0.113.9'), '203.0.113.9');
    assert.is(await sourceIp(two.url, 'forged, 203.0.113.9, 10.0.0.1'), '203.0.113.9');
    assert.is(await sourceIp(two.url, '203.0.113.9'), '203.0.113.9', 'a shorter chain: its left-most entry');
  } finally {
    await one.close();
    await two.close();
  }
});

test('POST /h/:id answers 431 past the header count or size limit, and stores nothing', async () => {
  const s = await startServer({ HOOKY_MAX_HEADERS: '10', HOOKY_MAX_HEADER_BYTES: '2048' });
  const sql = postgres(await testDatabaseUrl(), { max: 1, onnotice: () => {} });
  try {
    const { id } = await createWebhook(s.url);
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `x-h${i}: v\r\n`).join('');
    // host + content-length + 8 = 10 fields: at the limit.
    const atLimit = await raw(s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n${fields(8)}\r\nok`);
    assert.match(atLimit, /^HTTP\/1\.1 200 /);
    const many = await raw(s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n${fields(9)}\r\nno`);
    assert.match(many, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(many, /\r\nConnection: close\r\n/i);
    const manyBody = JSON.parse(many.slice(many.indexOf('\r\n\r\n') + 4));
    assert.equal(manyBody, { error: 'too_many_headers', message: 'More than 10 header fields', limit: 10 });
    const big = await fetch(`${s.url}/h/${id}`, { method: 'POST', body: 'no', headers: { 'x-big': 'a'.repeat(2100) } });
    assert.is(big.status, 431);
    assert.is(((await big.json()) as { error: string }).error, 'headers_too_large');
    // Counted in bytes as sent: host and content-length are 20, a header sent twice 2 × 5, and
    // x-u 3 plus a value of 1,000 two-byte characters between ASCII ones (uWS trims non-ASCII
    // bytes at either end of a value).
    const sized = (pad: number) =>
      raw(s.server.port, Buffer.from(`POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nx-r: ab\r\nx-r: ab\r\nx-u: a${'é'.repeat(1000)}${'a'.repeat(pad)}\r\n\r\nok`));
    assert.match(await sized(14), /^HTTP\/1\.1 200 /, 'exactly 2,048 bytes');
    assert.match(await sized(15), /^HTTP\/1\.1 431 /, 'one byte more');
    assert.is(await rows(sql, id), 2);
  } finally {
    await s.close();
    await sql.end();
  }
});

test('the default header limit is uWS\'s own: 48 header fields are captured', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const fields = Array.from({ length: 47 }, (_, i) => `x-h${i}: v\r\n`).join('');
  const reply = await raw(ctx.s.server.port, `GET /h/${id} HTTP/1.1\r\nhost: x\r\n${fields}\r\n`);
  assert.match(reply, /^HTTP\/1\.1 200 /);
  const rid = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)).id;
  const p = (await (await fetch(`${ctx.s.url}/api/webhooks/${id}/requests/${rid}`)).json()) as { headers: Record<string, string> };
  assert.is(Object.keys(p.headers).length, 48);
});

test('request ids are time-ordered: later capture, greater id', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push(((await (await fetch(`${ctx.s.url}/h/${id}`)).json()) as { id: string }).id);
  assert.equal([...ids].sort(), ids);
});

test('nothing lost: every 2xx of a burst of 2000 concurrent captures is in the database', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const { Agent, request } = await import('node:http');
  const agent = new Agent({ keepAlive: true, maxSockets: 200 });
  const acked: string[] = [];
  let failed = 0;
  await Promise.all(
    Array.from({ length: 2000 }, (_, i) =>
      new Promise<void>((resolve) => {
        const req = request(`${ctx.s.url}/h/${id}`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => {
            if (res.statusCode === 200) acked.push(JSON.parse(body).id);
            else failed++;
            resolve();
          });
        });
        req.on('error', () => {
          failed++;
          resolve();
        });
        req.end(JSON.stringify({ n: i }));
      }),
    ),
  );
  agent.destroy();
  assert.is(acked.length + failed, 2000);
  assert.ok(acked.length > 0);
  const stored = await ctx.sql`select id::text from requests where webhook_id = ${id}`;
  const storedIds = new Set(stored.map((r) => r.id as string));
  const missing = acked.filter((a) => !storedIds.has(a));
  assert.equal(missing, [], 'every acknowledged id is stored');
  assert.is(storedIds.size, acked.length, 'and nothing was stored without an answer');
});

/** Everything the server sends on one connection until it closes it or `ms` pass. */
function rawUntilClose(port: number, request: string | Buffer, ms = 2000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ text, closed: false });
    }, ms);
    sock.on('data', (d) => (text += d.toString('latin1')));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    sock.on('error', reject);
    sock.write(request);
  });
}

const payloadOf = async (base: string, webhookId: string, reply: string) => {
  const rid = JSON.parse(reply.slice(reply.lastIndexOf('\r\n\r\n') + 4)).id as string;
  return (await (await fetch(`${base}/api/webhooks/${webhookId}/requests/${rid}`)).json()) as Record<string, unknown> & {
    headers: Record<string, string>;
  };
};

test('pipelined captures: uWS closes the connection, and no capture is stored that was not answered', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const one = `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi`;
  const { text, closed } = await rawUntilClose(ctx.s.server.port, one.repeat(10));
  assert.ok(closed, 'uWS 20.30 closes a connection that pipelines behind an answer still pending');
  const answers = text.match(/HTTP\/1\.1 200 /g)?.length ?? 0;
  // Give a capture that would still be written the time to commit.
  await new Promise((r) => setTimeout(r, 300));
  assert.is(await rows(ctx.sql, id), answers, 'rows stored == answers received');
});

test('Content-Length given twice with different values is refused 400 before the body; one that is not a number is closed by uWS; nothing stored', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  for (const lengths of [['2', '5'], ['5', '2'], ['2', '2', '3']]) {
    const head = lengths.map((l) => `content-length: ${l}\r\n`).join('');
    const { text, closed } = await rawUntilClose(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\n${head}\r\nhello`);
    assert.match(text, /^HTTP\/1\.1 400 /, lengths.join(' + '));
    assert.match(text, /"error":"invalid_request"/);
    assert.ok(closed, 'the connection is closed, the body never read');
  }
  // uWS 20.30's parser drops these before any handler can answer.
  for (const length of ['5abc', '2, 2', '-1', '+5']) {
    const { text, closed } = await rawUntilClose(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: ${length}\r\n\r\nhello`);
    assert.is(text, '', length);
    assert.ok(closed, length);
  }
  assert.is(await rows(ctx.sql, id), 0);
  // The same length twice is one length (RFC 9110 §8.6).
  const same = await raw(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nhi`);
  assert.match(same, /^HTTP\/1\.1 200 /);
  assert.is(await rows(ctx.sql, id), 1);
  assert.is((await payloadOf(ctx.s.url, id, same)).body, 'hi');
});

test('Transfer-Encoding other than exactly chunked is refused 400 before the body; with Content-Length uWS closes; nothing stored', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const chunked = '5\r\nhello\r\n0\r\n\r\n';
  for (const te of ['xchunked', 'chunked, identity', 'gzip', 'identity', 'chunked\r\ntransfer-encoding: chunked']) {
    const { text, closed } = await rawUntilClose(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: ${te}\r\n\r\n${chunked}`);
    assert.match(text, /^HTTP\/1\.1 400 /, te);
    assert.match(text, /"error":"invalid_request"/);
    assert.ok(closed);
  }
  // Both: uWS 20.30 closes the connection before any handler runs (RFC 9112 §6.3 allows that).
  const both = await rawUntilClose(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n${chunked}`);
  assert.is(both.text, '');
  assert.ok(both.closed);
  assert.is(await rows(ctx.sql, id), 0);
  const upper = await raw(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: Chunked\r\n\r\n${chunked}`);
  assert.match(upper, /^HTTP\/1\.1 200 /, 'coding names are case-insensitive');
  assert.is(await rows(ctx.sql, id), 1);
});

test('repeated Cookie headers are joined with "; " (RFC 6265), others with ", "', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const reply = await raw(ctx.s.server.port, `GET /h/${id} HTTP/1.1\r\nhost: x\r\ncookie: a=1\r\nx-tag: one\r\nCookie: b=2\r\nx-tag: two\r\n\r\n`);
  const p = await payloadOf(ctx.s.url, id, reply);
  assert.is(p.headers.cookie, 'a=1; b=2');
  assert.is(p.headers['x-tag'], 'one, two');
});

test('the header-bytes limit counts bytes, not UTF-16 units', async () => {
  const s = await startServer({ HOOKY_MAX_HEADER_BYTES: '2048' });
  try {
    const { id } = await createWebhook(s.url);
    // 1,100 × "é": 1,100 UTF-16 units but 2,200 bytes. (uWS trims non-ASCII bytes at either end
    // of a value, so the value starts and ends with an ASCII letter.)
    const value = Buffer.from(`a${'é'.repeat(1100)}a`);
    const head = Buffer.from(`GET /h/${id} HTTP/1.1\r\nhost: x\r\nx-name: `);
    const reply = await raw(s.server.port, Buffer.concat([head, value, Buffer.from('\r\n\r\n')]));
    assert.match(reply, /^HTTP\/1\.1 431 /);
    assert.match(reply, /"error":"headers_too_large"/);
    const fits = await raw(s.server.port, Buffer.concat([head, Buffer.from(`a${'é'.repeat(900)}a`), Buffer.from('\r\n\r\n')]));
    assert.match(fits, /^HTTP\/1\.1 200 /);
    assert.is((await payloadOf(s.url, id, fits)).headers['x-name'], `a${'é'.repeat(900)}a`);
  } finally {
    await s.close();
  }
});

test('Expect: 100-continue for an unknown webhook or an over-limit Content-Length is answered 404 / 413 at once, without the body', async (ctx) => {
  for (const target of [uniqueId('nope'), '-bad']) {
    const { text } = await rawUntilClose(ctx.s.server.port, `POST /h/${target} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n`, 1500);
    // uWS 20.30 writes the 100 itself before any handler runs; the final answer follows at once.
    assert.match(text, /^(HTTP\/1\.1 100 Continue\r\n\r\n)?HTTP\/1\.1 404 /, target);
    assert.match(text, /"error":"not_found"/);
  }
  const { id } = await createWebhook(ctx.s.url);
  const big = await rawUntilClose(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: ${64 * 1024 + 1}\r\n\r\n`, 1500);
  assert.match(big.text, /^(HTTP\/1\.1 100 Continue\r\n\r\n)?HTTP\/1\.1 413 /);
  // A known webhook still takes the body after the 100.
  const ok = await raw(ctx.s.server.port, `POST /h/${id} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nhi`);
  assert.match(ok, /HTTP\/1\.1 200 /);
  assert.is(await rows(ctx.sql, id), 1);
});

test('a custom status 204, 205 or 304 is refused a body at create, and sent with none', async (ctx) => {
  for (const status of [204, 205, 304]) {
    const res = await fetch(`${ctx.s.url}/api/webhooks`, { method: 'POST', body: JSON.stringify({ response: { status, body: 'x' } }) });
    assert.is(res.status, 400, String(status));
    assert.match(((await res.json()) as { message: string }).message, /cannot have a body/);
  }
  for (const [status, framing] of [
    [204, /^HTTP\/1\.1 204 No Content\r\n(?![\s\S]*Content-Length)[\s\S]*\r\n\r\n$/i],
    [304, /^HTTP\/1\.1 304 Not Modified\r\n(?![\s\S]*Content-Length)[\s\S]*\r\n\r\n$/i],
    [205, /^HTTP\/1\.1 205 Reset Content\r\n[\s\S]*Content-Length: 0\r\n\r\n$/i],
  ] as const) {
    const { id } = await createWebhook(ctx.s.url, { response: { status, headers: { 'x-hooky': 'yes' } } });
    // A webhook stored before the rule (or written by hand) with a body: the body is not sent.
    await ctx.sql`update webhooks set response = ${ctx.sql.json({ status, body: 'not sent' })} where id = ${id}`;
    const other = await createWebhook(ctx.s.url, { response: { status } });
    for (const target of [other.id, id]) {
      // Two requests on one connection: the first answer must end where its headers end.
      const one = `GET /h/${target} HTTP/1.1\r\nhost: x\r\n\r\n`;
      const sock = connect(ctx.s.server.port, '127.0.0.1');
      let out = '';
      sock.on('data', (d) => (out += d.toString('latin1')));
      sock.write(one);
      const end = Date.now() + 3000;
      while ((out.match(/\r\n\r\n/g)?.length ?? 0) < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      sock.write(one);
      while ((out.match(/\r\n\r\n/g)?.length ?? 0) < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 50));
      sock.destroy();
      const [first, second] = out.split(/(?<=\r\n\r\n)/);
      assert.match(first ?? '', framing, `${status} ${target}`);
      assert.match(second ?? '', framing, `${status} ${target}: the connection is still in step`);
    }
  }
});

test('the raw query string is kept exactly as received, beside the decoded queryParams', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const query = 'b=a%20b+c&a=1&a=%7E~&sig=x%2Fy%3D&empty=&flag';
  const reply = await raw(ctx.s.server.port, `GET /h/${id}/p%2Fq?${query} HTTP/1.1\r\nhost: x\r\n\r\n`);
  const p = await payloadOf(ctx.s.url, id, reply);
  assert.is(p.rawQuery, query);
  assert.is(p.path, '/p%2Fq');
  assert.equal(p.queryParams, { b: 'a b c', a: ['1', '~~'], sig: 'x/y=', empty: '', flag: '' });
  const none = await payloadOf(ctx.s.url, id, await raw(ctx.s.server.port, `GET /h/${id} HTTP/1.1\r\nhost: x\r\n\r\n`));
  assert.is(none.rawQuery, '');
});

test('bytes that are not UTF-8 reach hooky already altered by uWS (a documented limit): replaced inside, trimmed at the ends of header values', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  const request = Buffer.concat([
    Buffer.from(`GET /h/${id}/p`),
    Buffer.from([0xff]),
    Buffer.from('%41?q='),
    Buffer.from([0xfe]),
    Buffer.from(' HTTP/1.1\r\nhost: x\r\nx-mid: a'),
    Buffer.from([0xff]),
    Buffer.from('b\r\nx-end: caf\u00e9\r\n\r\n'),
  ]);
  const p = await payloadOf(ctx.s.url, id, await raw(ctx.s.server.port, request));
  // If a uWS upgrade keeps these bytes, README's Known limits and docs/protocol.md must change.
  assert.is(p.path, '/p\ufffd%41');
  assert.is(p.rawQuery, 'q=\ufffd');
  assert.is(p.headers['x-mid'], 'a\ufffdb');
  assert.is(p.headers['x-end'], 'caf');
});

test.run();
