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

test.run();
