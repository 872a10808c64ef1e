import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { migrate } from '../src/db/migrate.js';
import { createLogger } from '../src/log.js';
import { testDatabaseUrl } from './support/db.js';

const test = suite('migrate');

test('two instances migrating a fresh database at once apply each migration exactly once', async () => {
  const url = await testDatabaseUrl();
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  const name = `hooky_migrate_${randomBytes(4).toString('hex')}`;
  await admin.unsafe(`create database ${name}`);
  const fresh = new URL(url);
  fresh.pathname = `/${name}`;
  const a = postgres(fresh.toString(), { max: 1, onnotice: () => {} });
  const b = postgres(fresh.toString(), { max: 1, onnotice: () => {} });
  try {
    const log = createLogger('silent');
    await Promise.all([migrate(a, log), migrate(b, log), migrate(a, log)]);
    const applied = await a`select name from hooky_migrations order by name`;
    assert.equal(applied.map((r) => r.name), ['001_init.sql', '002_lean_requests.sql', '003_positions.sql']);
    const tables = await a`select table_name from information_schema.tables where table_schema = 'public' order by 1`;
    assert.equal(tables.map((r) => r.table_name), ['hooky_migrations', 'request_batches', 'requests', 'webhooks']);
  } finally {
    await a.end();
    await b.end();
    await admin.unsafe(`drop database ${name}`);
    await admin.end();
  }
});

test.run();
