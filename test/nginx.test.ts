/**
 * docs/deploy/nginx.conf, run by Debian's nginx in front of hooky: captures, REST, /ws, the
 * client's address through X-Forwarded-For, and the HTTP/1.0 and pipelined requests that uWS
 * alone leaves unanswered. Without nginx on the machine the suite says so and does not run,
 * unless CI is set: in CI a missing nginx is a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import postgres from 'postgres';
import { testDatabaseUrl } from './support/db.js';
import { createWebhook, startServer, type TestServer } from './support/server.js';
import { freePort } from './support/suite.js';
import { findTool, untilListening } from './support/tools.js';
import { openClient } from './support/ws.js';

const example = new URL('../docs/deploy/nginx.conf', import.meta.url);

interface Ctx {
  hooky: TestServer;
  sql: postgres.Sql;
  nginx: ChildProcess;
  port: number;
  dir: string;
}

const test = suite<Ctx>('nginx in front of hooky (docs/deploy/nginx.conf)', {} as never);
const binary = findTool(['nginx', '/usr/sbin/nginx'], '-v');

/** Starts nginx in the foreground on `port`, with the example as its only server, in `dir`. */
async function startNginx(bin: string, dir: string, port: number, upstreamPort: number): Promise<ChildProcess> {
  const text = readFileSync(example, 'utf8');
  const site = text.replace('server 127.0.0.1:3000;', `server 127.0.0.1:${upstreamPort};`).replace('listen 80;', `listen 127.0.0.1:${port};`);
  assert.is.not(site, text, 'the example still has the `server 127.0.0.1:3000;` and `listen 80;` lines this test points elsewhere');
  assert.ok(site.includes(`listen 127.0.0.1:${port};`) && site.includes(`server 127.0.0.1:${upstreamPort};`));
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
  writeFileSync(join(dir, 'hooky.conf'), site);
  // One process (no master): it runs as the user who runs the tests and writes only under dir.
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/hooky.conf;
}
`,
  );
  const child = spawn(bin, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  await untilListening(child, 'nginx', port, () => stderr + readFileSync(join(dir, 'error.log'), 'utf8'));
  return child;
}

/** Writes `request` on a fresh connection (from `localAddress`) and reads until the server closes or `ms` pass. */
function exchange(port: number, request: string, ms = 3000, localAddress = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ port, host: '127.0.0.1', localAddress });
    let out = '';
    const timer = setTimeout(() => sock.destroy(), ms);
    sock.on('data', (d) => (out += d.toString('latin1')));
    sock.on('close', () => (clearTimeout(timer), resolve(out)));
    sock.on('error', reject);
    sock.write(request);
  });
}

const rows = async (sql: postgres.Sql, webhookId: string) =>
  Number((await sql`select count(*)::int as n from requests where webhook_id = ${webhookId}`)[0]!.n);

if (binary === undefined && process.env.CI === undefined) {
  console.log('nginx test not run: nginx is not installed (apt-get install -y nginx, then npm test; with CI=true a missing nginx fails)');
} else {
  test.before(async (ctx) => {
    assert.ok(binary, 'nginx must be installed in CI (.ci/run installs it: apt-get install -y nginx)');
    ctx.hooky = await startServer({ HOOKY_TRUST_PROXY: '1' });
    ctx.sql = postgres(await testDatabaseUrl(), { max: 1, onnotice: () => {} });
    ctx.dir = mkdtempSync(join(tmpdir(), 'hooky-nginx-'));
    ctx.port = await freePort();
    ctx.nginx = await startNginx(binary, ctx.dir, ctx.port, ctx.hooky.server.port);
  });

  test.after(async (ctx) => {
    if (ctx.nginx && ctx.nginx.exitCode === null) {
      const exited = new Promise((r) => ctx.nginx.once('exit', r));
      ctx.nginx.kill('SIGTERM');
      await exited;
    }
    await ctx.hooky?.close();
    await ctx.sql?.end();
    if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
  });

  test('a capture and the REST API work through nginx, byte for byte', async (ctx) => {
    const via = `http://127.0.0.1:${ctx.port}`;
    const { id } = await createWebhook(via);
    const res = await fetch(`${via}/h/${id}/orders?x=1&sig=a%2Fb`, { method: 'POST', body: '{"amount":100}', headers: { 'content-type': 'application/json' } });
    assert.is(res.status, 200);
    const { id: rid } = (await res.json()) as { id: string };
    const list = (await (await fetch(`${via}/api/webhooks/${id}/requests`)).json()) as {
      requests: { id: string; path: string; rawQuery: string; body: string; headers: Record<string, string> }[];
    };
    assert.is(list.requests.length, 1);
    assert.is(list.requests[0]!.id, rid);
    assert.is(list.requests[0]!.path, '/orders');
    assert.is(list.requests[0]!.rawQuery, 'x=1&sig=a%2Fb');
    assert.is(list.requests[0]!.body, '{"amount":100}');
    assert.is(list.requests[0]!.headers['content-type'], 'application/json');
    const missing = await fetch(`${via}/api/webhooks/${id}`, { method: 'PUT' });
    assert.is(missing.status, 405, 'errors come through as hooky sent them');
    assert.is(((await missing.json()) as { error: string }).error, 'method_not_allowed');
  });

  test('a header whose name uWS refuses (an underscore, a dot) is left out by nginx, so the capture goes through', async (ctx) => {
    const via = `http://127.0.0.1:${ctx.port}`;
    const { id } = await createWebhook(via);
    // Straight to hooky such a request gets no answer (docs/limits-and-security.md).
    const res = await fetch(`${via}/h/${id}`, { method: 'POST', body: 'x', headers: { X_Api_Key: 'k', 'X.Trace': 't', 'X-Kept': 'yes' } });
    assert.is(res.status, 200);
    const { id: rid } = (await res.json()) as { id: string };
    const got = (await (await fetch(`${via}/api/webhooks/${id}/requests/${rid}`)).json()) as { headers: Record<string, string> };
    assert.is(got.headers['x-kept'], 'yes');
    assert.equal(Object.keys(got.headers).filter((h) => h.includes('_') || h.includes('.')), []);
  });

  test('sourceIp is the client nginx saw, from X-Forwarded-For with HOOKY_TRUST_PROXY=1; a forged entry is ignored', async (ctx) => {
    const { id } = await createWebhook(ctx.hooky.url);
    // From 127.0.0.2 (any 127/8 address is this machine): hooky itself sees nginx, 127.0.0.1.
    const reply = await exchange(
      ctx.port,
      `GET /h/${id} HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 198.51.100.1\r\nconnection: close\r\n\r\n`,
      3000,
      '127.0.0.2',
    );
    assert.match(reply, /^HTTP\/1\.1 200 /);
    const rid = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)).id as string;
    const p = (await (await fetch(`${ctx.hooky.url}/api/webhooks/${id}/requests/${rid}`)).json()) as { sourceIp: string; headers: Record<string, string> };
    assert.is(p.headers['x-forwarded-for'], '198.51.100.1, 127.0.0.2');
    assert.is(p.sourceIp, '127.0.0.2');
  });

  test('/ws through nginx: connected, joined, and new-request for a capture made through nginx', async (ctx) => {
    const { id } = await createWebhook(ctx.hooky.url);
    const client = await openClient(`ws://127.0.0.1:${ctx.port}/ws`);
    try {
      assert.is((await client.next('connected')).data.protocol, 'hooky.v1');
      client.send({ event: 'join', data: { webhookId: id }, ref: 1 });
      assert.is((await client.next('joined')).ref, 1);
      assert.is((await fetch(`http://127.0.0.1:${ctx.port}/h/${id}`, { method: 'POST', body: 'live' })).status, 200);
      const event = await client.next('new-request');
      assert.is(event.data.body, 'live');
      assert.is(event.data.webhookId, id);
    } finally {
      await client.close();
    }
  });

  test('HTTP/1.0 and pipelined requests, which uWS alone leaves unanswered, are answered through nginx', async (ctx) => {
    const { id } = await createWebhook(ctx.hooky.url);
    const old = await exchange(ctx.port, `POST /h/${id} HTTP/1.0\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi`);
    assert.match(old, /^HTTP\/1\.1 200 /);
    const one = `POST /h/${id} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi`;
    const pipelined = await exchange(ctx.port, one.repeat(9) + one.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n'), 5000);
    assert.is(pipelined.match(/HTTP\/1\.1 200 /g)?.length ?? 0, 10, pipelined);
    assert.is(await rows(ctx.sql, id), 11);
  });
}

test.run();
