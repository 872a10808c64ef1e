import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startEmbedded, type Embedded } from '../src/db/embedded.js';
import { createLogger } from '../src/log.js';

const lines: string[] = [];
const log = createLogger('info', (l) => lines.push(l));

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

test('a second start on a data directory this process already runs is refused, not taken for an orphan', async () => {
  const err = await startEmbedded(dir, log).catch((e: Error) => e);
  assert.instance(err, Error);
  assert.match((err as Error).message, /already running in this process/);
});

test.run();
