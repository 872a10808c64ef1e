import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient, type CapturedRequest } from '../src/client/index.js';
import { testDatabaseUrl } from './support/db.js';
import { eventually, figures } from './support/observe.js';
import { runMain, spawnMain, type Running } from './support/process.js';

const mainTs = new URL('../src/main.ts', import.meta.url).pathname;
import { createWebhook } from './support/server.js';

/** The pids of a process's children (its workers), from /proc. */
function children(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

/** How many established TCP connections on local `port` each of `pids` holds, from /proc. */
function connectionsByPid(pids: number[], port: number): Map<number, number> {
  const established = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEX_IP:HEX_PORT; state 01 is ESTABLISHED; the inode is column 10.
      if (f.length > 9 && Number.parseInt(f[1]!.split(':')[1]!, 16) === port && f[3] === '01') established.add(f[9]!);
    }
  }
  const counts = new Map<number, number>();
  for (const pid of pids) {
    let n = 0;
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(safeReadlink(`/proc/${pid}/fd/${fd}`));
      if (m && established.has(m[1]!)) n++;
    }
    counts.set(pid, n);
  }
  return counts;
}

function safeReadlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return ''; // closed between the listing and the read
  }
}

/** One HTTP exchange over `agent`; resolves with the status and body. */
function exchange(url: string, agent: Agent | false, method = 'GET', body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const sample = (text: string, name: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
};

function runs(pid: number): boolean {
  try {
    return process.kill(pid, 0);
  } catch {
    return false; // ESRCH: it has stopped
  }
}

const stopped = async (r: Running) => {
  if (r.child.exitCode === null) r.child.kill('SIGTERM');
  return r.exited;
};

const serving = suite('cluster: HOOKY_WORKERS=2');

serving('starts two workers on one port, and both take connections and answer', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2' }, 60_000);
  const agent = new Agent({ keepAlive: true, maxSockets: 24 });
  try {
    const workers = children(r.child.pid!);
    assert.is(workers.length, 2, 'the primary has two children');
    assert.match(r.output(), new RegExp(`"port":${r.port},"workers":2,"msg":"hooky listening on http://127\\.0\\.0\\.1:${r.port}"`));
    assert.is(r.output().match(/hooky listening on/g)?.length, 1, 'one listening line for the service');
    // 24 connections at once: the kernel spreads them over both listening sockets by their ports.
    const answers = await Promise.all(Array.from({ length: 24 }, () => exchange(`${r.url}/healthz`, agent)));
    assert.ok(answers.every((a) => a.status === 200));
    const held = connectionsByPid(workers, r.port);
    assert.ok([...held.values()].every((n) => n > 0), `each worker holds connections: ${JSON.stringify([...held])}`);
    figures('two workers share one port', { connections: Object.fromEntries(held) });
  } finally {
    agent.destroy();
    assert.is(await stopped(r), 0, r.output());
  }
});

serving('/metrics describes the whole service: captures on both workers add up, whichever worker is scraped', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2' }, 60_000);
  const agent = new Agent({ keepAlive: true, maxSockets: 24 });
  try {
    const { id } = await createWebhook(r.url);
    const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => exchange(`${r.url}/h/${id}`, agent, 'POST', `n${i}`)));
    assert.ok(answers.every((a) => a.status === 200));
    const held = connectionsByPid(children(r.child.pid!), r.port);
    assert.ok([...held.values()].every((n) => n > 0), `the captures came over connections to both workers: ${JSON.stringify([...held])}`);
    // A new connection per scrape, so scrapes land on either worker.
    for (let i = 0; i < 6; i++) {
      const { status, text } = await exchange(`${r.url}/metrics`, false);
      assert.is(status, 200);
      assert.is(sample(text, 'hooky_captures_total'), 60, 'the sum over both workers');
      assert.ok(sample(text, 'process_resident_memory_bytes') > 0);
    }
  } finally {
    agent.destroy();
    assert.is(await stopped(r), 0, r.output());
  }
});

serving('a capture on one worker reaches the room on the other exactly once and in order, handed over by the primary rather than read back from Postgres', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2' }, 60_000);
  const clients: ReturnType<typeof createClient>[] = [];
  try {
    const id = `siblings-${Date.now().toString(36)}`;
    assert.is((await exchange(`${r.url}/api/webhooks`, false, 'POST', JSON.stringify({ id }))).status, 201);
    const got: string[][] = [];
    // The WebSockets are the only connections open, and the kernel picks a worker for each by
    // its ports: clients join until both workers serve the room (six at least, 32 at most).
    let held = new Map<number, number>();
    const both = () => held.size === 2 && [...held.values()].every((n) => n > 0);
    while (clients.length < 32 && (clients.length < 6 || !both())) {
      const c = createClient(r.url);
      const mine: string[] = [];
      c.on('new-request', (req: CapturedRequest) => mine.push(req.id));
      clients.push(c);
      got.push(mine);
      await c.join(id);
      held = connectionsByPid(children(r.child.pid!), r.port);
    }
    assert.ok(both(), `both workers serve the room: ${JSON.stringify([...held])}`);
    const acked: string[] = [];
    // One after the other, each on a new connection (either worker): the order is the answers'.
    for (let i = 0; i < 40; i++) {
      const answer = await exchange(`${r.url}/h/${id}`, false, 'POST', `n${i}`);
      assert.is(answer.status, 200);
      acked.push((JSON.parse(answer.text) as { id: string }).id);
    }
    await eventually(() => got.every((g) => g.length >= acked.length), 10_000, 'every capture on every client');
    await new Promise((res) => setTimeout(res, 500)); // room for a late duplicate to show
    for (const g of got) assert.equal(g, acked, 'each client: every capture, once, in order');
    // Each capture reaches the worker that did not commit it. Read back from Postgres, every one
    // would count here (NOTIFY alone: 40); handed over, the read happens only when NOTIFY's
    // message outran the primary's.
    const { text } = await exchange(`${r.url}/metrics`, false);
    const filled = sample(text, 'hooky_relay_filled_total');
    assert.ok(filled < acked.length / 2, `read back from Postgres: ${filled} of ${acked.length}`);
    figures('a room on both workers', { connections: Object.fromEntries(held), captures: acked.length, readBackFromPostgres: filled });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    assert.is(await stopped(r), 0, r.output());
  }
});

serving('a worker that cannot start fails the start-up: exit 1 with its reason, and no replacement is started', async () => {
  const busy = createNetServer();
  await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
  try {
    const port = (busy.address() as AddressInfo).port;
    const { code, output } = await runMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2', PORT: String(port) });
    assert.is(code, 1);
    assert.match(output, new RegExp(`"worker":1,[^\\n]*"msg":"start-up failed: port ${port} on 127\\.0\\.0\\.1 is already in use`));
    assert.match(output, /"msg":"start-up failed: worker 1 exited \(code 1\) before it listened"/);
    assert.not.match(output, /starting another/);
  } finally {
    busy.close();
  }
});

serving.run();

const shutdown = suite('cluster: shutdown');

shutdown('SIGTERM to the primary with captures in flight: every 2xx is stored, the rest get 503 or a closed connection, exit 0', async () => {
  const dbUrl = await testDatabaseUrl();
  const r = await spawnMain({ DATABASE_URL: dbUrl, HOOKY_WORKERS: '2' }, 60_000);
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const workers = children(r.child.pid!);
    const { id } = await createWebhook(r.url);
    const agent = new Agent({ keepAlive: true, maxSockets: 40 });
    const acked: string[] = [];
    const unavailable: string[] = [];
    const closed: string[] = [];
    const unexpected: string[] = [];
    let sent = 0;
    // 40 senders, each capturing in a loop until its connection is refused.
    const senders = Array.from({ length: 40 }, async () => {
      for (;;) {
        sent++;
        const answer = await exchange(`${r.url}/h/${id}`, agent, 'POST', '{"n":1}').catch((e: NodeJS.ErrnoException) => e);
        if (answer instanceof Error) {
          closed.push(answer.code ?? answer.message);
          return;
        }
        if (answer.status === 200) acked.push((JSON.parse(answer.text) as { id: string }).id);
        else if (answer.status === 503) unavailable.push((JSON.parse(answer.text) as { error: string }).error);
        else unexpected.push(`${answer.status} ${answer.text}`);
      }
    });
    await eventually(() => acked.length >= 200, 30_000, '200 captures acknowledged');
    const ackedAtSigterm = acked.length;
    r.child.kill('SIGTERM');
    assert.is(await r.exited, 0);
    await Promise.all(senders);
    agent.destroy();
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), `worker ${pid} has exited`);
    const stored = new Set((await sql`select id::text from requests where webhook_id = ${id}`).map((x) => x.id as string));
    assert.equal(
      acked.filter((a) => !stored.has(a)),
      [],
      'every acknowledged capture is in Postgres',
    );
    assert.ok(stored.size >= acked.length);
    assert.equal(unexpected, [], 'no answer but 200 and 503');
    assert.is(acked.length + unavailable.length + closed.length, sent, 'every request was answered or saw its connection close');
    for (const u of unavailable) assert.ok(u === 'draining' || u === 'storage_unavailable', u);
    for (const c of closed) assert.match(c, /^(ECONNRESET|ECONNREFUSED|EPIPE|socket hang up)$/);
    const out = r.output();
    assert.match(out, /"msg":"SIGTERM: shutting down 2 workers"/);
    assert.is(out.match(/"worker":\d+,"pid":\d+,"msg":"SIGTERM: shutting down"/g)?.length, 2, 'each worker ran its own shutdown');
    assert.match(out, /"msg":"stopped"\}\s*$/, 'the primary says stopped last');
    figures('SIGTERM to two workers', { ackedBeforeSigterm: ackedAtSigterm, ackedAfterSigterm: acked.length - ackedAtSigterm, status503: unavailable.length, connectionClosed: closed.length });
  } finally {
    r.child.kill('SIGKILL');
    await sql.end();
  }
});

shutdown.run();

const restart = suite('cluster: a worker that dies');

restart('a worker killed with SIGKILL is logged and replaced on the same port; captures go on being stored', async () => {
  const dbUrl = await testDatabaseUrl();
  const r = await spawnMain({ DATABASE_URL: dbUrl, HOOKY_WORKERS: '2' }, 60_000);
  try {
    const [victim, survivor] = children(r.child.pid!) as [number, number];
    const { id } = await createWebhook(r.url);
    process.kill(victim, 'SIGKILL');
    await eventually(() => children(r.child.pid!).length === 2 && !children(r.child.pid!).includes(victim), 30_000, 'a new worker');
    const replacement = children(r.child.pid!).find((p) => p !== survivor)!;
    assert.match(r.output(), new RegExp(`"level":"error",[^\\n]*"msg":"worker \\d+ \\(pid ${victim}\\) exited \\(SIGKILL\\): starting another in \\d+ ms"`));
    await eventually(() => r.output().includes('"msg":"worker restarted on port'), 30_000, 'the replacement listening');
    const agent = new Agent({ keepAlive: true, maxSockets: 24 });
    try {
      const answers = await Promise.all(Array.from({ length: 48 }, (_, i) => exchange(`${r.url}/h/${id}`, agent, 'POST', `n${i}`)));
      assert.ok(answers.every((a) => a.status === 200), JSON.stringify(answers.filter((a) => a.status !== 200)));
      const held = connectionsByPid([survivor, replacement], r.port);
      assert.ok(held.get(replacement)! > 0, `the replacement takes connections: ${JSON.stringify([...held])}`);
    } finally {
      agent.destroy();
    }
    const list = (await (await fetch(`${r.url}/api/webhooks/${id}/requests?limit=100`)).json()) as { requests: unknown[] };
    assert.is(list.requests.length, 48);
  } finally {
    assert.is(await stopped(r), 0, r.output());
  }
});

restart('a SIGTERM while a replacement is still starting stops the service cleanly (exit 0)', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2' }, 60_000);
  try {
    const [victim] = children(r.child.pid!) as [number, number];
    process.kill(victim, 'SIGKILL');
    // The replacement is forked 250 ms later; the signal lands while it loads and connects.
    await eventually(() => children(r.child.pid!).length === 2 && !children(r.child.pid!).includes(victim), 30_000, 'a new worker');
    r.child.kill('SIGTERM');
    assert.is(await r.exited, 0, r.output());
    assert.not.match(r.output(), /"msg":"worker restarted on port/, 'the signal came before the replacement listened');
    assert.match(r.output(), /"msg":"stopped"\}\s*$/);
  } finally {
    r.child.kill('SIGKILL');
  }
});

restart('a Ctrl-C while the workers start (SIGINT to the whole group) is the stop asked for: exit 0, no worker left', async () => {
  // Its own process group, as a terminal gives it: the signal reaches the primary and every worker.
  const child = spawn(process.execPath, ['--import', 'tsx', mainTs], {
    env: { ...process.env, DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2', PORT: '0', HOST: '127.0.0.1', HOOKY_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let workers: number[] = [];
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const ready = new Promise<void>((resolve) => {
    const on = (d: Buffer) => {
      out += d;
      // The first worker is up; the primary is still waiting for the second.
      if (out.includes('"msg":"database ready"')) {
        workers = children(child.pid!);
        resolve();
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
  });
  try {
    await Promise.race([ready, exited]);
    process.kill(-child.pid!, 'SIGINT');
    assert.is(await exited, 0, out);
    assert.not.match(out, /start-up failed/);
    assert.match(out, /"msg":"SIGINT during start-up: (stopped before every worker had started|shutting down once started)"/);
    await eventually(() => workers.every((pid) => !runs(pid)), 10_000, 'no worker left');
  } finally {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

restart('an SDK client on a worker killed with SIGKILL reconnects and resumes: every capture answered 2xx reaches it exactly once', async () => {
  const dbUrl = await testDatabaseUrl();
  const r = await spawnMain({ DATABASE_URL: dbUrl, HOOKY_WORKERS: '2' }, 60_000);
  const client = createClient(r.url, { minDelayMs: 100 });
  try {
    // Not fetch: its keep-alive connection would stay open beside the client's.
    const id = `cluster-${Date.now().toString(36)}`;
    assert.is((await exchange(`${r.url}/api/webhooks`, false, 'POST', JSON.stringify({ id }))).status, 201);
    const got: string[] = [];
    client.on('new-request', (req: CapturedRequest) => got.push(req.id));
    await client.join(id);
    // The client's WebSocket is the one connection open on the port (captures below close theirs).
    const workers = children(r.child.pid!);
    const held = connectionsByPid(workers, r.port);
    const victim = workers.find((p) => held.get(p) === 1);
    assert.ok(victim, `one worker holds the client's connection: ${JSON.stringify([...held])}`);

    const acked: string[] = [];
    let failed = 0;
    let stop = false;
    // Four senders capture on new connections (spread over both workers) through the kill.
    const senders = Array.from({ length: 4 }, async (_, s) => {
      for (let i = 0; !stop; i++) {
        const answer = await exchange(`${r.url}/h/${id}`, false, 'POST', `s${s}-${i}`).catch(() => undefined);
        if (answer?.status === 200) acked.push((JSON.parse(answer.text) as { id: string }).id);
        else failed++;
      }
    });
    await eventually(() => acked.length >= 50, 30_000, '50 captures before the kill');
    process.kill(victim, 'SIGKILL');
    const ackedAtKill = acked.length;
    await eventually(() => children(r.child.pid!).length === 2 && !children(r.child.pid!).includes(victim), 30_000, 'a new worker');
    await eventually(() => acked.length >= ackedAtKill + 100, 30_000, '100 captures after the kill');
    stop = true;
    await Promise.all(senders);
    await eventually(() => acked.every((a) => got.includes(a)), 30_000, 'every acknowledged capture delivered');
    await new Promise((res) => setTimeout(res, 1500)); // room for a late duplicate to show
    assert.is(new Set(got).size, got.length, 'no capture delivered twice');
    const listed = await exchange(`${r.url}/api/webhooks/${id}/requests?limit=1000`, false);
    const stored = new Set((JSON.parse(listed.text) as { requests: { id: string }[] }).requests.map((x) => x.id));
    assert.ok(got.every((g) => stored.has(g)), 'every delivered capture is stored');
    figures('SDK across a worker SIGKILL', { acked: acked.length, ackedAtKill, failedAnswers: failed, delivered: got.length });
  } finally {
    await client.close();
    assert.is(await stopped(r), 0, r.output());
  }
});

restart('a primary killed with SIGKILL leaves no worker behind: each sees its channel close and shuts down', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WORKERS: '2' }, 60_000);
  const workers = children(r.child.pid!);
  try {
    r.child.kill('SIGKILL');
    await r.exited;
    await eventually(() => workers.every((pid) => !runs(pid)), 30_000, 'both workers gone');
    assert.is(r.output().match(/"msg":"the primary is gone: shutting down"/g)?.length, 2);
  } finally {
    for (const pid of workers) if (runs(pid)) process.kill(pid, 'SIGKILL');
  }
});

restart.run();

const cli = suite('cluster: hooky serve --workers');

cli('hooky serve --workers 2 serves with two workers; --workers 0 is a usage error told with the rule, exit 2', async () => {
  const env = { ...process.env, DATABASE_URL: await testDatabaseUrl(), PORT: '0', HOST: '127.0.0.1', HOOKY_RETENTION_MAX_REQUESTS: '0', HOOKY_RETENTION_MAX_AGE_HOURS: '0' };
  const cliTs = new URL('../src/cli.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', cliTs, 'serve', '--workers', '2'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  try {
    await eventually(() => /hooky listening on/.test(out), 60_000, 'the listening line');
    assert.match(out, /"workers":2,"msg":"hooky listening on http:\/\/127\.0\.0\.1:\d+"/);
    assert.is(children(child.pid!).length, 2);
  } finally {
    child.kill('SIGTERM');
    assert.is(await exited, 0);
  }
  const refused = spawnSync(process.execPath, ['--import', 'tsx', cliTs, 'serve', '--workers', '0'], { env, encoding: 'utf8' });
  assert.is(refused.status, 2);
  assert.match(refused.stderr, /^hooky: --workers must be at least 1\n/);
});

cli.run();

const embedded = suite('cluster: embedded PostgreSQL');

embedded('without DATABASE_URL the primary starts one embedded PostgreSQL for every worker and stops it after the last one', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hooky-cluster-'));
  try {
    const r = await spawnMain({ DATABASE_URL: '', HOOKY_DATA_DIR: dataDir, HOOKY_WORKERS: '2' }, 90_000);
    const postmaster = Number(readFileSync(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    try {
      const { id } = await createWebhook(r.url);
      const answers = await Promise.all(Array.from({ length: 20 }, () => exchange(`${r.url}/h/${id}`, false, 'POST', 'x')));
      assert.ok(answers.every((a) => a.status === 200));
      // The migrations ran once, in the primary: no worker line says it applied one.
      assert.not.match(r.output(), /"worker":\d+,[^\n]*"msg":"migration applied"/);
      assert.is(r.output().match(/"msg":"database ready"/g)?.length, 2, 'both workers use it');
    } finally {
      r.child.kill('SIGINT');
      assert.is(await r.exited, 0);
    }
    assert.not.ok(existsSync(join(dataDir, 'pg', 'postmaster.pid')), 'postgres stopped cleanly');
    assert.throws(() => process.kill(postmaster, 0), 'no orphaned postmaster');
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

embedded.run();
