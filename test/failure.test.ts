import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isUnreachable, mayHaveCommitted } from '../src/db/failure.js';

const test = suite('db/failure: what a failed query says about the database');
const withCode = (code: string) => Object.assign(new Error(code), { code });

test('refused, reset, timed out and shutting-down connections are unreachable; a query error is not', () => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', '57P01']) {
    assert.ok(isUnreachable(withCode(code)), code);
  }
  assert.not.ok(isUnreachable(withCode('23505')), 'a unique violation');
  assert.not.ok(isUnreachable(new Error('no code')));
});

test('a statement may have committed unless it was never sent or Postgres answered an error', () => {
  assert.not.ok(mayHaveCommitted(withCode('ECONNREFUSED')));
  assert.not.ok(mayHaveCommitted(withCode('CONNECTION_ENDED')));
  const answered = Object.create(postgres.PostgresError.prototype) as Error;
  assert.not.ok(mayHaveCommitted(answered));
  assert.ok(mayHaveCommitted(withCode('ECONNRESET')), 'cut while the statement was out');
  assert.ok(mayHaveCommitted(withCode('CONNECTION_CLOSED')));
});

test.run();
