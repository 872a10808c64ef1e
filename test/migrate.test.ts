import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { migrate } from '../src/db/migrate.js';
import { newRequestId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { requestIdFloor } from '../src/protocol.js';
import { createStore } from '../src/store.js';
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
    assert.equal(applied.map((r) => r.name), ['001_init.sql', '002_lean_requests.sql', '003_positions.sql', '004_webhooks_by_creation.sql']);
    // The webhook list pages by (created_at, id): an index walk, not a sort of every webhook.
    const indexes = await a`select indexname from pg_indexes where tablename = 'webhooks' order by 1`;
    assert.equal(indexes.map((r) => r.indexname), ['webhooks_created_at_id', 'webhooks_pkey']);
    const tables = await a`select table_name from information_schema.tables where table_schema = 'public' order by 1`;
    assert.equal(tables.map((r) => r.table_name), ['hooky_migrations', 'request_batches', 'requests', 'webhooks']);
  } finally {
    await a.end();
    await b.end();
    await admin.unsafe(`drop database ${name}`);
    await admin.end();
  }
});

test('migration 003 gives the requests stored before it one batch per webhook, in id order, and new batches the positions after it', async () => {
  const url = await testDatabaseUrl();
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  const name = `hooky_migrate_${randomBytes(4).toString('hex')}`;
  await admin.unsafe(`create database ${name}`);
  const fresh = new URL(url);
  fresh.pathname = `/${name}`;
  const sql = postgres(fresh.toString(), { max: 1, onnotice: () => {} });
  try {
    // A database as hooky left it before 003: 001 and 002 applied, requests stored.
    const dir = new URL('../src/db/migrations/', import.meta.url);
    await sql.unsafe('create table hooky_migrations (name text primary key, applied_at timestamptz not null default now())');
    for (const file of ['001_init.sql', '002_lean_requests.sql']) {
      await sql.unsafe(readFileSync(new URL(file, dir), 'utf8'));
      await sql`insert into hooky_migrations (name) values (${file})`;
    }
    await sql`insert into webhooks (id) values ('old'), ('empty')`;
    const old = [newRequestId(), newRequestId(), newRequestId()];
    for (const id of old) await sql`insert into requests (id, webhook_id, payload) values (${id}, 'old', ${JSON.stringify({ id })})`;

    await migrate(sql, createLogger('silent'));
    const store = createStore(sql);
    assert.equal(await store.latest('old'), { position: 1, id: old[2]! });
    assert.is(await store.latest('empty'), null);
    const replay = (await store.requestsAfter('old', await store.cursorOf('old', requestIdFloor(0)), 10)).rows;
    assert.equal(replay.map((r) => r.id), old);
    assert.equal((await store.requestsAfter('old', await store.cursorOf('old', old[0]!), 10)).rows.map((r) => r.id), old.slice(1));
    const next = newRequestId();
    assert.equal(await store.insertRequests([{ id: next, webhookId: 'old', json: JSON.stringify({ id: next }) }]), new Map([['old', 2]]));
    assert.equal((await store.requestsAfter('old', await store.cursorOf('old', old[2]!), 10)).rows.map((r) => r.id), [next]);
  } finally {
    await sql.end();
    await admin.unsafe(`drop database ${name}`);
    await admin.end();
  }
});

test.run();
