import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { forwarded, json, line, size } from '../src/format.js';
import type { CapturedRequest } from '../src/protocol.js';

const test = suite('format');

const captured = (over: Partial<CapturedRequest> = {}): CapturedRequest => ({
  id: '019a2f4e-5c1b-7a03-9d2e-4b6f0a1c2d3e',
  webhookId: 'w',
  method: 'POST',
  path: '/orders/42',
  headers: { 'content-type': 'application/json' },
  queryParams: { x: '1', t: 'a b' },
  rawQuery: 'x=1&t=a%20b',
  body: '{}',
  bodyEncoding: 'utf8',
  size: 1234,
  timestamp: '2026-12-02T13:04:05.067Z',
  sourceIp: '127.0.0.1',
  userAgent: null,
  ...over,
});

/** The timestamp as the local time of day the line shows. */
const local = (iso: string) => {
  const t = new Date(iso);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
};

test('line shows local time, method, path with the query as it arrived, size and content type', () => {
  assert.is(line(captured()), `${local('2026-12-02T13:04:05.067Z')}  POST   /orders/42?x=1&t=a%20b  1.2 KiB  application/json`);
});

test('line rebuilds the query of a request stored before rawQuery, and shows - for no content type and no ? for no query', () => {
  const { rawQuery: _, ...old } = captured();
  assert.match(line(old), '  POST   /orders/42?x=1&t=a+b  1.2 KiB  ');
  assert.match(line(captured({ method: 'DELETE', rawQuery: '', queryParams: {}, headers: {}, size: 0 })), /  DELETE \/orders\/42  0 B  -$/);
});

test('json is the payload on one line, as stored', () => {
  const req = captured({ body: 'two\nlines' });
  const text = json(req);
  assert.not.match(text, '\n');
  assert.equal(JSON.parse(text), req);
});

test('forwarded names status, method, URL and duration', () => {
  assert.is(forwarded({ method: 'PUT' }, { status: 202, statusText: 'Accepted', url: 'http://t.example/in?x=1', ms: 12 }), '→ 202 Accepted PUT http://t.example/in?x=1 (12 ms)');
});

test('size counts in B, KiB and MiB', () => {
  assert.equal([0, 1023, 1024, 1536, 1024 * 1024, 5 * 1024 * 1024 + 1].map(size), ['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '1.0 MiB', '5.0 MiB']);
});

test.run();
