import { createServer, type IncomingHttpHeaders } from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { forward, forwardedBy, isCaptureUrlOf, outgoing } from '../src/forward.js';
import type { CapturedRequest } from '../src/protocol.js';
import { freePort, withCleanup } from './support/suite.js';

const test = suite('forward');

const captured = (over: Partial<CapturedRequest> = {}): CapturedRequest => ({
  id: '019a2f4e-5c1b-7a03-9d2e-4b6f0a1c2d3e',
  webhookId: 'w',
  method: 'POST',
  path: '/orders/a%20b',
  headers: { host: 'hooky.example', 'content-type': 'text/plain', 'content-length': '3', connection: 'close, x-drop', 'x-drop': '1', 'proxy-authorization': 'p', te: 'trailers', 'x-keep': 'k' },
  queryParams: { x: '1', tag: ['a', 'b c'] },
  body: 'abc',
  bodyEncoding: 'utf8',
  size: 3,
  timestamp: '2026-12-02T00:00:00.000Z',
  sourceIp: '127.0.0.1',
  userAgent: null,
  ...over,
});

test('outgoing appends the sub-path to the target path and the captured query after the target one', () => {
  const out = outgoing(captured({ rawQuery: 'x=1&tag=a&tag=b+c' }), new URL('http://t.example:4000/base/?k=v'));
  assert.is(out.method, 'POST');
  assert.is(out.path, '/base/orders/a%20b?k=v&x=1&tag=a&tag=b+c');
  assert.is(outgoing(captured({ path: '/', queryParams: {}, rawQuery: '' }), new URL('http://t.example/')).path, '/');
  assert.is(outgoing(captured({ path: '/', queryParams: {}, rawQuery: '' }), new URL('http://t.example/hook')).path, '/hook');
});

test('outgoing sends the captured query and the target query byte for byte, as they arrived', () => {
  const out = outgoing(captured({ rawQuery: 'sp=a+b&t=a%20b~&e=&flag', queryParams: { sp: 'a b', t: 'a b~', e: '', flag: '' } }), new URL('http://t.example/in?k=a%20b'));
  assert.is(out.path, '/in/orders/a%20b?k=a%20b&sp=a+b&t=a%20b~&e=&flag');
});

test('outgoing rebuilds the query from queryParams for a request stored before rawQuery existed', () => {
  const out = outgoing(captured(), new URL('http://t.example/'));
  assert.is(out.path, '/orders/a%20b?x=1&tag=a&tag=b+c');
});

test('outgoing drops hop-by-hop headers and those Connection names, and sets content-length for the body', () => {
  const out = outgoing(captured(), new URL('http://t.example/'));
  assert.equal(out.headers, { 'content-type': 'text/plain', 'x-keep': 'k', 'content-length': '3' });
});

test('outgoing sends a base64 body as its bytes', () => {
  const bytes = Buffer.from([0, 255, 128]);
  const out = outgoing(captured({ body: bytes.toString('base64'), bodyEncoding: 'base64', size: 3 }), new URL('http://t.example/'));
  assert.ok(out.body!.equals(bytes));
  assert.is(outgoing(captured({ body: null, headers: {} }), new URL('http://t.example/')).body, undefined);
});

test('outgoing with a run id appends it to the loop guard header; without one the header passes as captured', () => {
  const marked = captured({ headers: { 'x-hooky-forwarded-by': 'aaaa, bbbb' } });
  assert.is(outgoing(captured({ headers: {} }), new URL('http://t.example/'), 'cccc').headers['x-hooky-forwarded-by'], 'cccc');
  assert.is(outgoing(marked, new URL('http://t.example/'), 'cccc').headers['x-hooky-forwarded-by'], 'aaaa, bbbb, cccc');
  assert.is(outgoing(marked, new URL('http://t.example/')).headers['x-hooky-forwarded-by'], 'aaaa, bbbb');
  assert.is(outgoing(captured({ headers: {} }), new URL('http://t.example/')).headers['x-hooky-forwarded-by'], undefined);
});

test('forwardedBy lists the runs in the loop guard header, blanks left out', () => {
  assert.equal(forwardedBy({ headers: { 'x-hooky-forwarded-by': ' aaaa,, bbbb ,' } }), ['aaaa', 'bbbb']);
  assert.equal(forwardedBy({ headers: {} }), []);
});

test('isCaptureUrlOf finds the webhook\'s own capture URL under any loopback name, sub-paths included', () => {
  const server = new URL('http://localhost:3000/');
  for (const t of ['http://localhost:3000/h/w', 'http://127.0.0.1:3000/h/w/a/b?x=1', 'http://[::1]:3000/h/w']) assert.ok(isCaptureUrlOf(new URL(t), server, 'w'), t);
  for (const t of ['http://localhost:3001/h/w', 'http://localhost:3000/h/w2', 'http://localhost:3000/h/other', 'http://example.com:3000/h/w']) {
    assert.not.ok(isCaptureUrlOf(new URL(t), server, 'w'), t);
  }
  assert.ok(isCaptureUrlOf(new URL('https://hooks.example/base/h/w'), new URL('https://hooks.example/base/'), 'w'));
});

test.run();

const send = withCleanup('forward()');

send('forward sends the rebuilt request with the run id and resolves with the answer\'s status and the URL', async (ctx) => {
  const got: { method: string; url: string; headers: IncomingHttpHeaders; body: Buffer }[] = [];
  const target = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201, 'Made').end('some answer');
    });
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  ctx.cleanup.push(() => new Promise((r) => target.close(r)));
  const { port } = target.address() as { port: number };
  const bytes = Buffer.from([0xff, 0x00, 0x80]);
  const answer = await forward(captured({ method: 'PUT', body: bytes.toString('base64'), bodyEncoding: 'base64', rawQuery: 't=a%20b' }), new URL(`http://127.0.0.1:${port}/in`), 'cccc');
  assert.equal({ status: answer.status, statusText: answer.statusText, url: answer.url }, { status: 201, statusText: 'Made', url: `http://127.0.0.1:${port}/in/orders/a%20b?t=a%20b` });
  assert.is(got.length, 1);
  assert.is(got[0]!.method, 'PUT');
  assert.is(got[0]!.url, '/in/orders/a%20b?t=a%20b');
  assert.ok(got[0]!.body.equals(bytes));
  assert.is(got[0]!.headers['x-hooky-forwarded-by'], 'cccc');
  assert.is(got[0]!.headers['x-keep'], 'k');
  assert.is(got[0]!.headers['x-drop'], undefined);
});

send('forward rejects with the socket error when nothing listens at the target', async () => {
  const port = await freePort();
  const err = await forward(captured(), new URL(`http://127.0.0.1:${port}/`), 'cccc').then(
    () => undefined,
    (e: unknown) => e as { code?: string },
  );
  assert.is(err?.code, 'ECONNREFUSED');
});

send.run();
