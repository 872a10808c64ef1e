import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { rootPlacement, startEmbedded, type Embedded } from '../src/db/embedded.js';
import { createLogger } from '../src/log.js';

const lines: string[] = [];
const log = createLogger('info', { write: (l: string) => lines.push(l) });

const test = suite('db/embedded: a lock file left behind');
let dir: string;
let pg: Embedded | undefined;

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'hooky-embedded-'));
});

test.after(async () => {
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a postmaster.pid whose pid is now another live process is removed, and the cluster starts with its data', async () => {
  pg = await startEmbedded(dir, log);
  let sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  await sql`create table kept (v text)`;
  await sql`insert into kept values ('committed')`;
  await sql.end();
  const lockFile = join(pg.dir, 'postmaster.pid');
  const lock = readFileSync(lockFile, 'utf8').split('\n');
  await pg.stop();
  // As after a container restart: the dead postmaster's pid now belongs to another process.
  lock[0] = String(process.pid);
  writeFileSync(lockFile, lock.join('\n'));

  pg = await startEmbedded(dir, log);
  assert.ok(lines.some((l) => l.includes(`removing a stale ${lockFile}: its pid ${process.pid} is now another process`)), lines.join(''));
  sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  assert.equal((await sql`select v from kept`).map((r) => r.v), ['committed']);
  await sql.end();
});

test('starting a cluster adds no signal or exit hooks: main.ts alone decides when Postgres stops', async () => {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'beforeExit', 'message'] as const;
  const before = events.map((e) => process.listenerCount(e));
  const other = await startEmbedded(mkdtempSync(join(tmpdir(), 'hooky-embedded-')), log);
  try {
    assert.equal(events.map((e) => process.listenerCount(e)), before);
  } finally {
    await other.stop();
    rmSync(dirname(other.dir), { recursive: true, force: true });
  }
});

test('a second start on a data directory this process already runs is refused, not taken for an orphan', async () => {
  const err = await startEmbedded(dir, log).catch((e: Error) => e);
  assert.instance(err, Error);
  assert.match((err as Error).message, /already running in this process/);
});

test.run();

const root = suite('db/embedded: run as root, in a folder user postgres cannot enter');
const asRoot = process.getuid?.() === 0;
let parent: string;
let placed: Embedded | undefined;

root.before(() => {
  // mkdtemp makes it 0700: user postgres cannot search it, so it cannot reach anything inside.
  parent = mkdtempSync(join(tmpdir(), 'hooky-private-'));
});

root.after(async () => {
  await placed?.stop();
  if (placed?.dir.startsWith(`${rootPlacement}/data/`)) rmSync(placed.dir, { recursive: true, force: true });
  rmSync(parent, { recursive: true, force: true });
});

// Only root runs PostgreSQL as another user; for anyone else there is nothing to place.
(asRoot ? root : root.skip)('the data goes to /var/lib/hooky/data/<hash>, the log and <dataDir>/pg-location say where, and a restart finds it again', async () => {
  lines.length = 0;
  const dataDir = join(parent, 'data');
  placed = await startEmbedded(dataDir, log);
  assert.match(placed.dir, new RegExp(`^${rootPlacement}/data/[0-9a-f]{16}-[0-9a-f]{8}$`));
  assert.is(readFileSync(join(dataDir, 'pg-location'), 'utf8').trim(), placed.dir);
  assert.ok(lines.some((l) => l.includes(`embedded PostgreSQL data in ${placed!.dir}: user postgres cannot reach ${dataDir}`)), lines.join(''));
  let sql = postgres(placed.url, { max: 1, onnotice: () => {} });
  await sql`create table kept (v text)`;
  await sql`insert into kept values ('committed')`;
  await sql.end();
  await placed.stop();

  placed = await startEmbedded(dataDir, log);
  sql = postgres(placed.url, { max: 1, onnotice: () => {} });
  assert.equal((await sql`select v from kept`).map((r) => r.v), ['committed']);
  await sql.end();
});

(asRoot ? root : root.skip)('the folder deleted and made again at the same path gets a new database, and the log names the old one', async () => {
  lines.length = 0;
  const dataDir = join(parent, 'again');
  const first = await startEmbedded(dataDir, log);
  let sql = postgres(first.url, { max: 1, onnotice: () => {} });
  await sql`create table kept (v text)`;
  await sql.end();
  await first.stop();
  // Its pointer and its password go with it; its data, elsewhere, stays.
  rmSync(dataDir, { recursive: true, force: true });
  let second: Embedded | undefined;
  try {
    second = await startEmbedded(dataDir, log);
    assert.is.not(second.dir, first.dir);
    sql = postgres(second.url, { max: 1, onnotice: () => {} });
    assert.equal((await sql`select to_regclass('kept') as t`).map((r) => r.t), [null], 'a database of its own');
    await sql.end();
    assert.ok(lines.some((l) => l.includes('"level":"warn"') && l.includes(`is left in ${first.dir}: remove it to reclaim its space`)), lines.join(''));
  } finally {
    await second?.stop();
    for (const dir of [first.dir, second?.dir]) if (dir?.startsWith(`${rootPlacement}/data/`)) rmSync(dir, { recursive: true, force: true });
  }
});

root.run();
