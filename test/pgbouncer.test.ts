/**
 * hooky behind Debian's PgBouncer (session pooling: the NOTIFY bus holds a LISTEN connection).
 * PgBouncer refuses any startup parameter it does not track, among them the plan_cache_mode the
 * pool sets (db/connect.ts): hooky must run without it, and say so. Without pgbouncer on the
 * machine the suite says so and does not run, unless CI is set: in CI a missing one is a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { openDatabase } from '../src/db/connect.js';
import type { Logger } from '../src/log.js';
import { testDatabaseUrl } from './support/db.js';
import { createWebhook, startServer } from './support/server.js';
import { freePort } from './support/suite.js';
import { findTool, untilListening } from './support/tools.js';

interface Ctx {
  bouncer: ChildProcess;
  dir: string;
  /** hooky's DATABASE_URL through PgBouncer. */
  url: string;
}

/** PgBouncer in the foreground on `port`, in session mode, passing every client to `upstream`. */
async function startPgbouncer(bin: string, dir: string, port: number, upstream: string): Promise<ChildProcess> {
  const u = new URL(upstream);
  const server = [
    `host=${u.hostname}`,
    `port=${u.port || 5432}`,
    `dbname=${decodeURIComponent(u.pathname.slice(1))}`,
    `user=${decodeURIComponent(u.username)}`,
    ...(u.password ? [`password=${decodeURIComponent(u.password)}`] : []),
  ].join(' ');
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    `[databases]
hooky = ${server}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = session
logfile = ${dir}/pgbouncer.log
`,
  );
  // PgBouncer will not run as root: there it takes the identity of postgres, who must read dir.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chmodSync(dir, 0o777);
  const child = spawn(bin, [...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  await untilListening(child, 'pgbouncer', port, () => stderr);
  return child;
}

const test = suite<Ctx>('PgBouncer in front of PostgreSQL', {} as never);
const binary = findTool(['pgbouncer', '/usr/sbin/pgbouncer'], '--version');

if (binary === undefined && process.env.CI === undefined) {
  console.log('pgbouncer test not run: pgbouncer is not installed (apt-get install -y pgbouncer, then npm test; with CI=true a missing pgbouncer fails)');
} else {
  test.before(async (ctx) => {
    assert.ok(binary, 'pgbouncer must be installed in CI (.ci/run installs it: apt-get install -y pgbouncer)');
    ctx.dir = mkdtempSync(join(tmpdir(), 'hooky-pgbouncer-'));
    const port = await freePort();
    ctx.bouncer = await startPgbouncer(binary, ctx.dir, port, await testDatabaseUrl());
    ctx.url = `postgres://hooky@127.0.0.1:${port}/hooky`;
  });

  test.after(async (ctx) => {
    if (ctx.bouncer && ctx.bouncer.exitCode === null) {
      const exited = new Promise((r) => ctx.bouncer.once('exit', r));
      ctx.bouncer.kill('SIGTERM');
      await exited;
    }
    if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
  });

  test('the pool runs without plan_cache_mode, which PgBouncer refuses, and says so once', async (ctx) => {
    const warnings: string[] = [];
    const quiet = () => {};
    const log: Logger = { error: quiet, warn: (m) => warnings.push(m), info: quiet, debug: quiet };
    const db = await openDatabase({ url: ctx.url, dataDir: '', poolSize: 2 }, log);
    try {
      const [row] = await db.sql<[{ mode: string }]>`select current_setting('plan_cache_mode') as mode`;
      assert.is(row.mode, 'auto', "the server's own setting");
      assert.is(warnings.length, 1);
      assert.match(warnings[0]!, 'plan_cache_mode');
      assert.match(warnings[0]!, 'ALTER ROLE <user> SET plan_cache_mode = force_generic_plan');
    } finally {
      await db.close();
    }
  });

  test('hooky serves through PgBouncer: a capture is answered, stored and listed', async (ctx) => {
    const s = await startServer({ DATABASE_URL: ctx.url });
    try {
      const { id } = await createWebhook(s.url);
      const res = await fetch(`${s.url}/h/${id}`, { method: 'POST', body: 'through the pooler' });
      assert.is(res.status, 200);
      const { id: rid } = (await res.json()) as { id: string };
      const list = (await (await fetch(`${s.url}/api/webhooks/${id}/requests`)).json()) as { requests: { id: string; body: string }[] };
      assert.equal(list.requests.map((r) => [r.id, r.body]), [[rid, 'through the pooler']]);
      assert.is((await fetch(`${s.url}/api/webhooks/${id}`, { method: 'DELETE' })).status, 204);
    } finally {
      await s.close();
    }
  });

  test.run();
}
