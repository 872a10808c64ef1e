import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bodyBytes, buildPayload, parseQuery } from '../src/payload.js';

const test = suite('payload');

const facts = { method: 'POST', path: '/', headers: {}, rawQuery: '', sourceIp: '::1' };

test('parseQuery decodes form style and turns repeated names into arrays', () => {
  assert.equal({ ...parseQuery('a=1&b=x+y&c=%E2%9C%93&a=2&a=3&empty=&flag') }, { a: ['1', '2', '3'], b: 'x y', c: '✓', empty: '', flag: '' });
  assert.equal({ ...parseQuery('') }, {});
  const proto = parseQuery('__proto__=x&constructor=y');
  assert.is(proto['__proto__'], 'x');
  assert.is(proto['constructor'], 'y');
});

test('utf8 bodies are text, others base64, and both round-trip byte for byte', () => {
  for (const body of [Buffer.from('{"ok":"✓"}'), Buffer.from([0, 1, 2, 255, 254]), Buffer.from('\u0000nul inside'), Buffer.from([0xe2, 0x9c])]) {
    const { payload, json } = buildPayload('id', 'w', facts, body, new Date(0));
    assert.ok(bodyBytes(payload).equals(body));
    assert.ok(bodyBytes(JSON.parse(json)).equals(body));
    assert.is(payload.size, body.length);
  }
  assert.is(buildPayload('id', 'w', facts, Buffer.from([0xe2, 0x9c]), new Date(0)).payload.bodyEncoding, 'base64');
  const empty = buildPayload('id', 'w', facts, Buffer.alloc(0), new Date(0)).payload;
  assert.is(empty.body, null);
  assert.is(empty.size, 0);
  assert.is(empty.timestamp, '1970-01-01T00:00:00.000Z');
});

test('the JSON is JSON.stringify of the payload, whatever the request holds', () => {
  const nasty = 'q"uote \\ back\u0000nul\n\u2028 é ✓ \ud83d\ude00';
  const cases = [
    { ...facts, headers: {} },
    { method: 'PATCH', path: `/a/${nasty}`, headers: { 'x-a': nasty, cookie: 'a=1; b="2"', 'user-agent': nasty }, rawQuery: `a=1&b=${encodeURIComponent(nasty)}&a=2&c="\\`, sourceIp: nasty },
    { method: 'GET', path: '/', headers: Object.assign(Object.create(null) as Record<string, string>, { __proto__: 'x', 'user-agent': 'curl/8' }), rawQuery: '__proto__=1', sourceIp: '127.0.0.1' },
  ];
  const bodies = [Buffer.alloc(0), Buffer.from(nasty), Buffer.from([0, 1, 2, 255, 254]), Buffer.from('{"a":[1,2,{"b":"c\\"d"}]}')];
  for (const f of cases)
    for (const body of bodies)
      for (const now of [new Date(0), new Date(1764672000123)]) {
        const { payload, json } = buildPayload('0190a8a0-0000-7000-8000-000000000000', 'w_1-x', f, body, now);
        assert.is(json, JSON.stringify(payload));
      }
});

test.run();
