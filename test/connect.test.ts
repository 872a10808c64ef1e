import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import postgres from 'postgres';
import { openDatabase, reconnectDelay, socketOf } from '../src/db/connect.js';
import { createLogger } from '../src/log.js';
import { testDatabaseUrl } from './support/db.js';

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

const socket = suite('db/connect: a Unix socket, named the libpq way');

socket('?host=/dir (and ?port=) become postgres.js options; any other URL is left as it is', () => {
  assert.equal(socketOf('postgresql:///hooky?host=/var/run/postgresql'), { url: 'postgresql:///hooky', socket: { host: '/var/run/postgresql' } });
  assert.equal(socketOf('postgres://u:p@localhost:5433/db?host=%2Frun%2Fpg&sslmode=disable'), {
    url: 'postgres://u:p@localhost:5433/db?sslmode=disable',
    socket: { host: '/run/pg', port: 5433 },
  });
  assert.equal(socketOf('postgres://u@localhost/db?host=/run/pg&port=6000').socket, { host: '/run/pg', port: 6000 });
  for (const url of ['postgres://u@127.0.0.1:5432/db', 'postgres://u@h/db?host=db.example']) assert.equal(socketOf(url), { url });
});

socket('hooky connects through the socket directory the test database listens in', async () => {
  const tcp = await testDatabaseUrl();
  const probe = postgres(tcp, { max: 1, onnotice: () => {} });
  const [{ dirs }] = await probe<[{ dirs: string }]>`select current_setting('unix_socket_directories') as dirs`;
  await probe.end();
  const dir = dirs.split(',').map((d) => d.trim()).find((d) => d.startsWith('/'));
  assert.ok(dir, `the test database listens on no Unix socket (unix_socket_directories = '${dirs}')`);
  const u = new URL(tcp);
  u.searchParams.set('host', dir);
  const db = await openDatabase({ url: u.toString(), dataDir: '', poolSize: 2 }, createLogger('warn'));
  try {
    const [row] = await db.sql<[{ via: string }]>`select coalesce(inet_client_addr()::text, 'a Unix socket') as via`;
    assert.is(row.via, 'a Unix socket');
    if (u.password) assert.not.ok(db.where.includes(u.password), 'the log line hides the password');
  } finally {
    await db.close();
  }
});

socket.run();

const plans = suite('db/connect: every connection keeps the plan it made');

plans('each pooled connection runs with plan_cache_mode = force_generic_plan, and names itself hooky', async () => {
  const db = await openDatabase({ url: await testDatabaseUrl(), dataDir: '', poolSize: 2 }, createLogger('warn'));
  try {
    // Two at once, so both of the pool's connections answer.
    const rows = await Promise.all([0, 1].map(() =>
      db.sql<[{ mode: string; app: string }]>`select current_setting('plan_cache_mode') as mode, current_setting('application_name') as app, pg_sleep(0.05)`));
    for (const [row] of rows) assert.equal({ mode: row.mode, app: row.app }, { mode: 'force_generic_plan', app: 'hooky' });
  } finally {
    await db.close();
  }
});

plans.run();

const password = suite('db/connect: the embedded cluster and its password');

password('a pg-password made after the data is said as that, with what to do, and the cluster is stopped', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hooky-password-'));
  try {
    const first = await openDatabase({ url: undefined, dataDir, poolSize: 2 }, createLogger('silent'));
    const dir = first.where.replace('embedded PostgreSQL in ', '');
    await first.close();
    // What a folder remade beside data that outlived it holds: a password the data never had.
    writeFileSync(join(dataDir, 'pg-password'), 'made-afterwards\n');
    const err = await openDatabase({ url: undefined, dataDir, poolSize: 2 }, createLogger('silent')).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.instance(err, Error);
    assert.match(err!.message, `does not take the password in ${join(dataDir, 'pg-password')}, which was made after its data`);
    assert.match(err!.message, /put back the pg-password made with it, or (move .* away|remove .*pg-location) to start a new database/);
    assert.not.ok(existsSync(join(dir, 'postmaster.pid')), 'the cluster is stopped, not left running');
    assert.ok(readFileSync(join(dataDir, 'pg-password'), 'utf8').includes('made-afterwards'), 'nothing of the folder was changed');
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

password.run();
