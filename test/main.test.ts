import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { testDatabaseUrl } from './support/db.js';
import { eventually, figures } from './support/observe.js';
import { runMain, spawnMain } from './support/process.js';
import { createWebhook } from './support/server.js';
import { joined } from './support/ws.js';

const mainTs = new URL('../src/main.ts', import.meta.url).pathname;

const startup = suite('main: start-up');

startup('logs one line with the URL it listens on, on the port it got for PORT=0', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl() });
  try {
    const line = r.output().split('\n').find((l) => l.includes('hooky listening on'));
    assert.ok(line, r.output());
    const entry = JSON.parse(line) as { level: string; msg: string; port: number };
    assert.is(entry.level, 'info');
    assert.is(entry.msg, `hooky listening on http://127.0.0.1:${r.port}`);
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

startup('bound to every interface without HOOKY_API_TOKEN: says what it is bound to and warns once that the API is open', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOST: '0.0.0.0' });
  try {
    const out = r.output();
    assert.match(out, new RegExp(`"level":"info",[^\\n]*"msg":"hooky listening on http://0\\.0\\.0\\.0:${r.port} \\(every IPv4 address of this machine; from here: http://localhost:${r.port}\\)"`));
    assert.is(out.match(/"level":"warn",[^\n]*"msg":"the REST API and \/ws need no token and are reachable on http:\/\/0\.0\.0\.0:/g)?.length, 1);
    assert.match(out, /Set HOOKY_API_TOKEN, or HOST=127\.0\.0\.1/);
  } finally {
    r.child.kill('SIGTERM');
    assert.is(await r.exited, 0);
  }
});

startup('no open-API warning on loopback, nor with a token on every interface', async () => {
  const url = await testDatabaseUrl();
  for (const env of [{ HOST: '127.0.0.1' }, { HOST: '0.0.0.0', HOOKY_API_TOKEN: 'a'.repeat(32) }]) {
    const r = await spawnMain({ DATABASE_URL: url, ...env });
    try {
      assert.not.match(r.output(), /need no token/, JSON.stringify(env));
    } finally {
      r.child.kill('SIGTERM');
      assert.is(await r.exited, 0);
    }
  }
});

startup('a second hooky on a port in use is refused with a clear message, exit 1; the first keeps all the traffic', async () => {
  const url = await testDatabaseUrl();
  const first = await spawnMain({ DATABASE_URL: url });
  try {
    const { code, output } = await runMain({ DATABASE_URL: url, PORT: String(first.port) });
    assert.is(code, 1);
    assert.match(output, new RegExp(`"level":"error",[^\\n]*"msg":"start-up failed: port ${first.port} on 127\\.0\\.0\\.1 is already in use by another process`));
    assert.is((await fetch(`${first.url}/healthz`)).status, 200);
  } finally {
    first.child.kill('SIGTERM');
    assert.is(await first.exited, 0);
  }
});

startup('workers that hooky starts itself (internal HOOKY_SHARE_PORT) may share one port; an independent hooky still may not join them', async () => {
  const url = await testDatabaseUrl();
  const a = await spawnMain({ DATABASE_URL: url, HOOKY_SHARE_PORT: '1' });
  const b = await spawnMain({ DATABASE_URL: url, HOOKY_SHARE_PORT: '1', PORT: String(a.port) }).catch((err: Error) => err);
  try {
    assert.ok(!(b instanceof Error), b instanceof Error ? b.message : '');
    const { code, output } = await runMain({ DATABASE_URL: url, PORT: String(a.port) });
    assert.is(code, 1);
    assert.match(output, /already in use/);
  } finally {
    if (!(b instanceof Error)) b.child.kill('SIGTERM');
    a.child.kill('SIGTERM');
    await a.exited;
    if (!(b instanceof Error)) await b.exited;
  }
});

startup.run();

const shutdown = suite('main: shutdown');

shutdown('SIGTERM under load: every 2xx is stored, the rest get 503 or a closed connection, clients get disconnect and 1001, exit 0', async () => {
  const dbUrl = await testDatabaseUrl();
  const r = await spawnMain({ DATABASE_URL: dbUrl });
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const { id } = await createWebhook(r.url);
    const clients = await Promise.all([1, 2, 3].map(() => joined(r.url.replace('http', 'ws') + '/ws', id)));
    const agent = new Agent({ keepAlive: true, maxSockets: 50 });
    const acked: string[] = [];
    const unavailable: { error: string; retryAfter: string | undefined }[] = [];
    const closed: string[] = [];
    const unexpected: string[] = [];
    let sent = 0;
    let inFlight = 0;
    // 50 senders, each capturing in a loop until its connection is refused.
    const senders = Array.from({ length: 50 }, async () => {
      for (;;) {
        sent++;
        inFlight++;
        const done = await new Promise<'again' | 'stop'>((resolve) => {
          const req = request(`${r.url}/h/${id}`, { method: 'POST', agent }, (res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => {
              if (res.statusCode === 200) acked.push(JSON.parse(body).id);
              else if (res.statusCode === 503) unavailable.push({ error: JSON.parse(body).error, retryAfter: res.headers['retry-after'] });
              else unexpected.push(`${res.statusCode} ${body}`);
              resolve('again');
            });
            res.on('error', (e: NodeJS.ErrnoException) => {
              closed.push(e.code ?? e.message);
              resolve('stop');
            });
          });
          req.on('error', (e: NodeJS.ErrnoException) => {
            closed.push(e.code ?? e.message);
            resolve('stop');
          });
          req.end('{"n":1}');
        });
        inFlight--;
        if (done === 'stop') return;
      }
    });
    while (acked.length < 200) await new Promise((res) => setTimeout(res, 5));
    const atSigterm = { inFlight, acked: acked.length, sent };
    r.child.kill('SIGTERM');
    for (const client of clients) {
      const disconnect = await client.next('disconnect');
      assert.equal(disconnect.data, { reason: 'server shutting down' });
      const { code, reason } = await client.closed;
      assert.is(code, 1001);
      assert.is(reason, 'server shutting down');
    }
    assert.is(await r.exited, 0);
    await Promise.all(senders);
    agent.destroy();
    const stored = new Set((await sql`select id::text from requests where webhook_id = ${id}`).map((x) => x.id as string));
    const missing = acked.filter((a) => !stored.has(a));
    assert.equal(missing, [], 'every acknowledged capture is in Postgres');
    assert.equal(unexpected, [], 'no answer but 200 and 503');
    assert.is(acked.length + unavailable.length + closed.length, sent, 'every request was answered or saw its connection close');
    for (const u of unavailable) {
      assert.is(u.retryAfter, '1', '503 carries Retry-After');
      assert.ok(u.error === 'draining' || u.error === 'storage_unavailable', u.error);
    }
    for (const c of closed) assert.match(c, /^(ECONNRESET|ECONNREFUSED|EPIPE|socket hang up)$/);
    assert.ok(acked.length > atSigterm.acked, 'requests in flight at SIGTERM were still committed and answered');
    assert.match(r.output(), /SIGTERM: shutting down[\s\S]*stopped/);
    figures('SIGTERM under load', {
      senders: 50,
      inFlightAtSigterm: atSigterm.inFlight,
      ackedBeforeSigterm: atSigterm.acked,
      ackedAfterSigterm: acked.length - atSigterm.acked,
      status503: unavailable.length,
      connectionClosed: closed.length,
      storedWithoutAnswer: stored.size - acked.length,
    });
  } finally {
    r.child.kill('SIGKILL');
    await sql.end();
  }
});

shutdown('a second SIGTERM ends the shutdown at once, with the status a shell gives SIGTERM (143)', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_SHUTDOWN_TIMEOUT_MS: '60000' });
  const { id } = await createWebhook(r.url, { response: { delayMs: 30_000 } });
  // A stored capture whose answer waits out its delay: the shutdown would wait for it.
  const waiting = fetch(`${r.url}/h/${id}`, { method: 'POST', body: 'x' }).catch(() => undefined);
  await eventually(async () => (await fetch(`${r.url}/api/webhooks/${id}/requests`).then((x) => x.json() as Promise<{ requests: unknown[] }>)).requests.length === 1, 5000, 'the capture stored');
  r.child.kill('SIGTERM');
  await eventually(() => /SIGTERM: shutting down/.test(r.output()), 5000, 'the shutdown under way');
  const asked = Date.now();
  r.child.kill('SIGTERM');
  assert.is(await r.exited, 143);
  assert.ok(Date.now() - asked < 3000, `exited ${Date.now() - asked} ms after the second signal`);
  assert.match(r.output(), /SIGTERM again: exiting without finishing the shutdown/);
  await waiting;
});

shutdown('npm start: a SIGTERM to npm, as a supervisor sends it, reaches hooky, which shuts down and leaves nothing running', async () => {
  const child = spawn('npm', ['start'], {
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, DATABASE_URL: await testDatabaseUrl(), PORT: '0', HOST: '127.0.0.1', HOOKY_LOG_LEVEL: 'info', HOOKY_RETENTION_MAX_REQUESTS: '0', HOOKY_RETENTION_MAX_AGE_HOURS: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let hooky: number | undefined;
  try {
    await eventually(() => out.includes('hooky listening on') || child.exitCode !== null, 90_000, 'the listening line');
    // The node process itself, not the shell npm runs the script in (its command line names main.js too).
    hooky = descendants(child.pid!).find((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node' && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dist/src/main.js'));
    assert.ok(hooky, `hooky runs under npm:\n${out}`);
    child.kill('SIGTERM');
    await exited;
    // Before, the script's shell died of the signal and hooky, its child, went on serving.
    await eventually(() => !runs(hooky!), 15_000, 'hooky stopped');
    assert.match(out, /"msg":"SIGTERM: shutting down"/);
    assert.match(out, /"msg":"stopped"/);
  } finally {
    child.kill('SIGKILL');
    if (hooky && runs(hooky)) process.kill(hooky, 'SIGKILL');
  }
});

/** Every process below `pid`, from /proc. */
function descendants(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return []; // gone meanwhile
  }
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

shutdown.run();

const embedded = suite('main: embedded PostgreSQL by default');

embedded('without DATABASE_URL: starts embedded Postgres, keeps data across restarts, stops it on exit', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hooky-main-'));
  const env = { DATABASE_URL: '', HOOKY_DATA_DIR: dataDir };
  try {
    const first = await spawnMain(env, 60_000);
    assert.match(first.output(), /"database":"embedded PostgreSQL in [^"]+","msg":"database ready"/);
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

embedded('a SIGTERM while embedded Postgres initialises waits for the start, then shuts down: exit 0, no postmaster left', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hooky-main-'));
  const child = spawn(process.execPath, ['--import', 'tsx', mainTs], {
    env: { ...process.env, DATABASE_URL: '', HOOKY_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', HOOKY_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const initialising = new Promise<void>((resolve) =>
      child.stderr!.on('data', (d) => {
        out += d;
        if (out.includes('"msg":"initialising embedded PostgreSQL"')) resolve();
      }),
    );
    await Promise.race([initialising, exited]);
    assert.match(out, /"msg":"initialising embedded PostgreSQL"/, 'it was still starting');
    child.kill('SIGTERM');
    assert.is(await exited, 0, out);
    assert.match(out, /"msg":"SIGTERM during start-up: shutting down once started"/);
    assert.not.match(out, /hooky listening on/, 'no listening line for a service that is stopping');
    assert.not.ok(existsSync(join(dataDir, 'pg', 'postmaster.pid')), 'postgres stopped cleanly');
  } finally {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
});

embedded('after kill -9 the postmaster it leaves behind is stopped by the next start, which serves every committed capture', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hooky-main-'));
  const env = { DATABASE_URL: '', HOOKY_DATA_DIR: dataDir };
  let orphan = 0;
  try {
    const first = await spawnMain(env, 60_000);
    const { id } = await createWebhook(first.url);
    for (const body of ['one', 'two']) assert.is((await fetch(`${first.url}/h/${id}`, { method: 'POST', body })).status, 200);
    orphan = Number(readFileSync(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    first.child.kill('SIGKILL');
    await first.exited;
    await new Promise((r) => setTimeout(r, 200));
    assert.not.throws(() => process.kill(orphan, 0), 'the postmaster outlived the SIGKILL');

    const started = Date.now();
    const second = await spawnMain(env, 60_000);
    try {
      assert.match(second.output(), new RegExp(`"level":"warn",[^\\n]*"msg":"stopping the PostgreSQL \\(pid ${orphan}\\) that a hooky which did not shut down left running`));
      const list = (await (await fetch(`${second.url}/api/webhooks/${id}/requests`)).json()) as { requests: { body: string }[] };
      assert.equal(list.requests.map((x) => x.body), ['two', 'one']);
      figures('restart after kill -9', { orphanPid: orphan, restartMs: Date.now() - started });
    } finally {
      second.child.kill('SIGTERM');
      assert.is(await second.exited, 0);
    }
  } finally {
    // Not left running behind a failed test.
    if (orphan && runs(orphan)) process.kill(orphan, 'SIGINT');
    rmSync(dataDir, { recursive: true, force: true });
  }
});

embedded.run();

function runs(pid: number): boolean {
  try {
    return process.kill(pid, 0);
  } catch {
    return false; // ESRCH: it has stopped
  }
}
