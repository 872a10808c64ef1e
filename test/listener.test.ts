import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { testDatabaseUrl } from './support/db.js';
import { figures } from './support/observe.js';
import { spawnMain, type Running } from './support/process.js';
import { createWebhook } from './support/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A raw keep-alive connection that sends one capture at a time and reads the status line. */
async function keepAlive(port: number) {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (d: Buffer) => (received += d));
  return {
    socket,
    /** Status of one POST, or 'timeout' after `ms`. */
    async capture(id: string, ms = 3000): Promise<string> {
      received = '';
      socket.write(`POST /h/${id} HTTP/1.1\r\nHost: hooky\r\nContent-Length: 2\r\n\r\nhi`);
      for (const start = Date.now(); Date.now() - start < ms; await sleep(10)) {
        const end = received.indexOf('\r\n\r\n');
        if (end >= 0 && received.includes('}', end)) return received.slice(0, received.indexOf('\r\n'));
      }
      return 'timeout';
    },
  };
}

/** One GET on a connection of its own: the status, or the error code. */
function freshGet(port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => (s.destroy(), resolve('timeout')), 3000);
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: hooky\r\nConnection: close\r\n\r\n`));
    s.on('data', (d: Buffer) => (got += d));
    s.on('close', () => (clearTimeout(timer), resolve(got.split('\r\n')[0] || 'closed')));
    s.on('error', (e: NodeJS.ErrnoException) => (clearTimeout(timer), resolve(e.code ?? e.message)));
  });
}

const test = suite('listener: at the open-file limit');
let r: Running | undefined;
const idle: Socket[] = [];

test.after(async () => {
  for (const s of idle) s.destroy();
  r?.child.kill('SIGKILL');
  await r?.exited;
});

test('more idle connections than `ulimit -n` allows: no CPU spin, open connections still capture, accepting resumes once they close', async () => {
  const limit = 256;
  r = await spawnMain({ DATABASE_URL: await testDatabaseUrl() }, 30_000, { fdLimit: limit });
  const { id } = await createWebhook(r.url);
  const open = await keepAlive(r.port);
  assert.match(await open.capture(id), /^HTTP\/1\.1 200/);

  for (let i = 0; i < limit + 150; i++) idle.push(connect(r.port, '127.0.0.1').on('error', () => {}));
  await sleep(1500);

  // uSockets' accept loop spun on EMFILE at 100 % of a core; the guard closes the listening socket.
  const cpuBefore = cpuSeconds(r.child.pid!);
  const started = Date.now();
  const statuses: string[] = [];
  for (let i = 0; i < 4; i++) {
    statuses.push(await open.capture(id));
    await sleep(400);
  }
  const cpu = cpuSeconds(r.child.pid!) - cpuBefore;
  const wall = (Date.now() - started) / 1000;
  for (const s of statuses) assert.match(s, /^HTTP\/1\.1 200/, 'a capture on a connection opened before still answers');
  assert.ok(cpu < 0.15 * wall, `CPU ${cpu.toFixed(2)} s in ${wall.toFixed(1)} s: the accept loop spins`);
  assert.match(r.output(), /"level":"warn",[^\n]*"msg":"open files at \d+ of the limit 256: not accepting new connections/);
  const metrics = await metricsOn(open);
  assert.match(metrics, /hooky_accept_pauses_total [1-9]/);
  assert.match(metrics, /^process_max_fds 256$/m, "prom-client reports the limit the guard works with");

  for (const s of idle.splice(0)) s.destroy();
  let after = '';
  for (const start = Date.now(); Date.now() - start < 10_000 && !after.startsWith('HTTP/1.1 200'); await sleep(200)) after = await freshGet(r.port, '/healthz');
  assert.match(after, /^HTTP\/1\.1 200/, 'a new connection is accepted again');
  figures('open-file limit', { limit, idle: limit + 150, cpuShare: +(cpu / wall).toFixed(3), statuses });
  open.socket.destroy();
});

/** GET /metrics on the kept-alive connection (the listening socket may be closed right now). */
async function metricsOn(conn: Awaited<ReturnType<typeof keepAlive>>): Promise<string> {
  let text = '';
  const onData = (d: Buffer) => (text += d);
  conn.socket.on('data', onData);
  conn.socket.write('GET /metrics HTTP/1.1\r\nHost: hooky\r\n\r\n');
  for (const start = Date.now(); Date.now() - start < 3000 && !text.includes('hooky_event_loop_delay_seconds_count'); ) await sleep(10);
  conn.socket.off('data', onData);
  return text;
}

test.run();
