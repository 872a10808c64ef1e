import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { outgoing } from '../src/forward.js';
import type { CapturedRequest } from '../src/protocol.js';

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
  const out = outgoing(captured(), new URL('http://t.example:4000/base/?k=v'));
  assert.is(out.method, 'POST');
  assert.is(out.path, '/base/orders/a%20b?k=v&x=1&tag=a&tag=b+c');
  assert.is(outgoing(captured({ path: '/', queryParams: {} }), new URL('http://t.example/')).path, '/');
  assert.is(outgoing(captured({ path: '/', queryParams: {} }), new URL('http://t.example/hook')).path, '/hook');
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

test.run();
