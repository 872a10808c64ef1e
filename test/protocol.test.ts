import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { requestIdFloor, requestIdPattern } from '../src/protocol.js';
import { uuidV7 } from './support/ids.js';

const floor = suite('protocol: requestIdFloor');

floor('sorts above every request id made before the millisecond, at most every one made at or after it', () => {
  const ms = Date.UTC(2030, 0, 1, 12, 0, 0, 123);
  const cutoff = requestIdFloor(ms);
  const hex = ms.toString(16).padStart(12, '0');
  assert.is(cutoff, `${hex.slice(0, 8)}-${hex.slice(8)}-7000-8000-000000000000`);
  assert.match(cutoff, requestIdPattern, 'usable as a `since`');
  for (let i = 0; i < 100; i++) {
    const [before, at, after] = [uuidV7(ms - 1), uuidV7(ms), uuidV7(ms + 1)];
    assert.match(at, requestIdPattern);
    assert.ok(before < cutoff, before);
    assert.ok(at >= cutoff, at);
    assert.ok(after > cutoff, after);
  }
  assert.is(requestIdFloor(-5), '00000000-0000-7000-8000-000000000000');
});

floor.run();
