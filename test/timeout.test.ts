import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { within } from '../src/timeout.js';

const test = suite('timeout: a wait that must end');

test('within answers what the promise answers in time, and rejects once the time is up', async () => {
  assert.is(await within(Promise.resolve(7), 1000), 7);
  const failed = await within(Promise.reject(new Error('down')), 1000).catch((e: Error) => e.message);
  assert.is(failed, 'down');
  const start = Date.now();
  const late = await within(new Promise(() => {}), 50).catch((e: Error) => e.message);
  assert.is(late, 'no answer within 50 ms');
  assert.ok(Date.now() - start < 1000);
});

test.run();
