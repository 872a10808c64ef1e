import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isUnreachable, mayHaveCommitted } from '../src/db/failure.js';
import { testDatabaseUrl } from './support/db.js';

const test = suite('db/failure: what a failed query says about the database');
const withCode = (code: string) => Object.assign(new Error(code), { code });

test('refused, reset, timed out and shutting-down connections are unreachable; a query error is not', () => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', '57P01']) {
    assert.ok(isUnreachable(withCode(code)), code);
  }
  assert.not.ok(isUnreachable(withCode('23505')), 'a unique violation');
  assert.not.ok(isUnreachable(new Error('no code')));
});

test('a connection exception, a server out of resources, or an error that ends the session is unreachable', async () => {
  for (const code of ['08006', '08001', '53100', '53300']) assert.ok(isUnreachable(withCode(code)), code);
  // As Postgres answers a connection to a database that takes none (ALTER DATABASE … ALLOW_CONNECTIONS false).
  const sql = postgres(await testDatabaseUrl(), { max: 1, onnotice: () => {} });
  const name = `hooky_closed_${process.pid}`;
  await sql.unsafe(`drop database if exists ${name}`);
  await sql.unsafe(`create database ${name} allow_connections false`);
  try {
    const url = new URL(await testDatabaseUrl());
    url.pathname = `/${name}`;
    const closed = postgres(url.toString(), { max: 1, onnotice: () => {}, connect_timeout: 5 });
    const err = await closed`select 1`.then(() => undefined, (e: unknown) => e);
    await closed.end();
    assert.is((err as { code?: string }).code, '55000');
    assert.ok(isUnreachable(err), String(err));
  } finally {
    await sql.unsafe(`drop database ${name}`);
    await sql.end();
  }
  const error = Object.assign(Object.create(postgres.PostgresError.prototype) as Error, { code: '55000', severity: 'ERROR' });
  assert.not.ok(isUnreachable(error), 'the same code in an ordinary error');
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
