import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newRequestId, newWebhookId } from '../src/ids.js';
import { requestIdPattern, webhookIdPattern } from '../src/protocol.js';

const test = suite('ids');

test('request ids are UUIDv7 and strictly increasing, within a millisecond and across a clock step back', () => {
  // Ahead of any id this process made so far: the generator's state is per process.
  const t = Date.now() + 60_000;
  const ids = [newRequestId(t), newRequestId(t), newRequestId(t), newRequestId(t - 1), newRequestId(t + 1)];
  for (const id of ids) assert.match(id, requestIdPattern);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `${ids[i]} > ${ids[i - 1]}`);
  const hex = t.toString(16).padStart(12, '0');
  assert.is(ids[0]!.slice(0, 13), `${hex.slice(0, 8)}-${hex.slice(8)}`);
});

test('request ids stay ordered past 4096 in one millisecond', () => {
  const t = Date.now() + 120_000;
  let prev = newRequestId(t);
  for (let i = 0; i < 10_000; i++) {
    const id = newRequestId(t);
    assert.ok(id > prev);
    prev = id;
  }
});

test('webhook ids match the contract pattern and carry 128 random bits', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const id = newWebhookId();
    assert.match(id, webhookIdPattern);
    assert.is(Buffer.from(id, 'base64url').length, 16);
    seen.add(id);
  }
  assert.is(seen.size, 2000);
});

test.run();
