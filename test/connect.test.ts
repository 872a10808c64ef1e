import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { reconnectDelay } from '../src/db/connect.js';

const test = suite('db/connect: reconnect delay');

test('starts at 25–50 ms and never exceeds 1 s, however long Postgres has been gone', () => {
  for (let i = 0; i < 1000; i++) {
    const first = reconnectDelay(0);
    assert.ok(first >= 0.025 && first <= 0.05, String(first));
    for (const failures of [1, 3, 5, 10, 50, 1000]) {
      const d = reconnectDelay(failures);
      assert.ok(d > 0 && d <= 1, `${failures} failures: ${d} s`);
    }
  }
  // postgres.js's default would wait up to 20 s after ten failures.
  assert.ok(reconnectDelay(10) >= 0.5);
});

test.run();
