import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpError, httpErrorOf, httpErrors } from '../src/errors.js';
import { createLogger } from '../src/log.js';

const table = suite('errors: the one table');

table('every 503 carries Retry-After, a 401 WWW-Authenticate, a 426 Sec-WebSocket-Version', () => {
  for (const [code, entry] of Object.entries(httpErrors)) {
    const err = new HttpError(code as keyof typeof httpErrors);
    if (entry.status === 503) assert.is(err.headers['retry-after'], '1', code);
    if (entry.status === 401) assert.is(err.headers['www-authenticate'], 'Bearer realm="hooky"', code);
    if (entry.status === 426) assert.is(err.headers['sec-websocket-version'], '13', code);
  }
});

table('headers given to one error join the code\'s own', () => {
  const err = new HttpError('method_not_allowed', 'Allowed: GET', { allow: 'GET' }, { allow: 'GET' });
  assert.equal(err.headers, { allow: 'GET' });
  assert.is(err.status, 405);
});

table.run();

const translate = suite('errors: httpErrorOf, the one translation of a failure');

function logged() {
  const lines: string[] = [];
  return { lines, log: createLogger('error', { write: (l: string) => lines.push(l) }) };
}

translate('an HttpError is answered as it is, and not logged', () => {
  const { lines, log } = logged();
  const err = new HttpError('not_found');
  assert.is(httpErrorOf(err, log, 'test'), err);
  assert.is(lines.length, 0);
});

translate('Postgres out of reach is 503 storage_unavailable, a bug 500 internal, each logged once', () => {
  const { lines, log } = logged();
  assert.is(httpErrorOf(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), log, 'test').code, 'storage_unavailable');
  assert.is(httpErrorOf(new TypeError('x is undefined'), log, 'test').code, 'internal');
  assert.is(lines.length, 2);
  assert.match(lines[0]!, '"msg":"test: storage unavailable"');
  assert.match(lines[1]!, '"msg":"test failed"');
});

translate.run();
