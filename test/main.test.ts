import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { testDatabaseUrl } from './support/db.js';
import { runMain, spawnMain } from './support/process.js';
import { createWebhook } from './support/server.js';
import { joined } from './support/ws.js';

const startup = suite('main: start-up');

startup('logs one line with the URL it listens on, on the port it got for PORT=0', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl() });
  try {
    assert.match(r.output(), new RegExp(`info hooky listening on http://127\\.0\\.0\\.1:${r.port} `));
    assert.is((await fetch(`${r.url}/healthz`)).status, 200);
  } finally {
    r.child.kill('SIGTERM');
    assert.is(await r.exited, 0);
  }
});

startup('bad configuration: every problem in one message, exit 1', async () => {
  const { code, output } = await runMain({ PORT: 'x', HOOKY_MAX_ROOMS: '0', DATABASE_URL: 'nope' });
  assert.is(code, 1);
  assert.match(output, /Invalid configuration/);
  for (const key of ['PORT', 'HOOKY_MAX_ROOMS', 'DATABASE_URL']) assert.ok(output.includes(key), key);
});

startup('refuses to start on the slow ws fallback of uWebSockets.js', async () => {
  const { code, output } = await runMain({ UWS_USE_FALLBACK: '1', DATABASE_URL: await testDatabaseUrl() });
  assert.is(code, 1);
  assert.match(output, /could not load its native binary/);
});

startup('an unreachable database is a clear start-up error, exit 1', async () => {
  const { code, output } = await runMain({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
  assert.is(code, 1);
  assert.match(output, /ECONNREFUSED|connect/);
});

startup.run();

const shutdown = suite('main: shutdown');

shutdown('SIGTERM under load: every 2xx is stored, clients get disconnect and 1001, exit 0', async () => {
  const dbUrl = await testDatabaseUrl();
  const r = await spawnMain({ DATABASE_URL: dbUrl });
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const { id } = await createWebhook(r.url);
    const client = await joined(r.url.replace('http', 'ws') + '/ws', id);
    const agent = new Agent({ keepAlive: true, maxSockets: 50 });
    const acked: string[] = [];
    const other: (number | string)[] = [];
    let stop = false;
    // 50 senders, each capturing in a loop until its connection is refused.
    const senders = Array.from({ length: 50 }, async () => {
      while (!stop) {
        const result = await new Promise<number | string>((resolve) => {
          const req = request(`${r.url}/h/${id}`, { method: 'POST', agent }, (res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => {
              if (res.statusCode === 200) acked.push(JSON.parse(body).id);
              resolve(res.statusCode!);
            });
          });
          req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          req.end('{"n":1}');
        });
        if (result !== 200) {
          other.push(result);
          if (typeof result === 'string') return;
        }
      }
    });
    while (acked.length < 200) await new Promise((res) => setTimeout(res, 5));
    const inFlightAt = acked.length;
    r.child.kill('SIGTERM');
    const disconnect = await client.next('disconnect');
    assert.equal(disconnect.data, { reason: 'server shutting down' });
    assert.is((await client.closed).code, 1001);
    assert.is(await r.exited, 0);
    stop = true;
    await Promise.all(senders);
    agent.destroy();
    const stored = new Set((await sql`select id::text from requests where webhook_id = ${id}`).map((x) => x.id as string));
    const missing = acked.filter((a) => !stored.has(a));
    assert.equal(missing, [], 'every acknowledged capture is in Postgres');
    assert.ok(acked.length >= inFlightAt);
    for (const o of other) assert.ok(o === 503 || typeof o === 'string', `unexpected answer ${o}`);
    assert.match(r.output(), /SIGTERM: shutting down[\s\S]*stopped/);
  } finally {
    r.child.kill('SIGKILL');
    await sql.end();
  }
});

shutdown.run();

const embedded = suite('main: embedded PostgreSQL by default');

embedded('without DATABASE_URL: starts embedded Postgres, keeps data across restarts, stops it on exit', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hooky-main-'));
  const env = { DATABASE_URL: '', HOOKY_DATA_DIR: dataDir };
  try {
    const first = await spawnMain(env, 60_000);
    assert.match(first.output(), /database ready \{"database":"embedded PostgreSQL in /);
    const { id } = await createWebhook(first.url);
    assert.is((await fetch(`${first.url}/h/${id}`, { method: 'POST', body: 'kept' })).status, 200);
    const pid = Number(readFileSync(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    first.child.kill('SIGINT');
    assert.is(await first.exited, 0);
    assert.not.ok(existsSync(join(dataDir, 'pg', 'postmaster.pid')), 'postgres stopped cleanly');
    assert.throws(() => process.kill(pid, 0), 'no orphaned postmaster');

    const second = await spawnMain(env, 60_000);
    try {
      const list = (await (await fetch(`${second.url}/api/webhooks/${id}/requests`)).json()) as { requests: { body: string }[] };
      assert.equal(list.requests.map((x) => x.body), ['kept']);
    } finally {
      second.child.kill('SIGTERM');
      assert.is(await second.exited, 0);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

embedded.run();
