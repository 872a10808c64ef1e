import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as v from 'valibot';
import { isPermanentRefusal, newRequestFrame, requestIdFloor, requestIdPattern, serverSchemas } from '../src/protocol.js';
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

const refusals = suite('protocol: isPermanentRefusal');

refusals('only the refusals no retry can fix are permanent: 400, 401, 403, 426; a proxy\'s 404 or 502 and every 503 are retried', () => {
  for (const status of [400, 401, 403, 426]) assert.ok(isPermanentRefusal(status), String(status));
  for (const status of [404, 408, 429, 500, 502, 503, 504]) assert.not.ok(isPermanentRefusal(status), String(status));
});

refusals.run();

const frames = suite('protocol: newRequestFrame');

frames('wraps the stored payload as it is, with the ref when there is one, into a frame the new-request schema reads', () => {
  const payload = JSON.stringify({
    id: requestIdFloor(1), webhookId: 'w', method: 'POST', path: '/', headers: {}, queryParams: {}, body: null,
    bodyEncoding: 'utf8', size: 0, timestamp: new Date(1).toISOString(), sourceIp: '127.0.0.1', userAgent: null,
  });
  assert.is(newRequestFrame(payload), `{"event":"new-request","data":${payload}}`);
  for (const ref of [undefined, 7, 'a"b']) {
    const frame = JSON.parse(newRequestFrame(payload, ref)) as unknown;
    const read = v.safeParse(serverSchemas['new-request'], frame);
    assert.ok(read.success);
    assert.is(read.output.ref, ref);
    assert.equal(read.output.data, JSON.parse(payload));
  }
});

frames.run();
