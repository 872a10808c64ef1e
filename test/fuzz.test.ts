/**
 * Generated bad input from a seeded generator (test/support/fuzz.ts) against hooky as its own
 * process: WebSocket frames, raw frame-level garbage and malformed HTTP requests. The server
 * must never crash, answer every frame and request as the contract says (an error event, a
 * close code, a 4xx, or for garbage its HTTP parser rejects, a closed connection), log no
 * error, and serve a clean client afterwards.
 *
 * `npm test` runs a smaller count; `npm run fuzz` (HOOKY_FUZZ=full) the full one. Set
 * HOOKY_FUZZ_SEED to replay a run; a failure names its seed and worker.
 */
import { connect } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { hardPayloadCeiling } from '../src/realtime.js';
import { testDatabaseUrl } from './support/db.js';
import { createRng, httpCase, wsCase, type HttpCase, type WsCase } from './support/fuzz.js';
import { figures, rssMiB } from './support/observe.js';
import { spawnMain, type Running } from './support/process.js';
import { openRawWebSocket } from './support/rawws.js';
import { createWebhook, uniqueId } from './support/server.js';
import { joined } from './support/ws.js';

const full = process.env.HOOKY_FUZZ === 'full';
const seed = Number(process.env.HOOKY_FUZZ_SEED ?? 1126);
const counts = full ? { frames: 100_000, raw: 2_000, http: 10_000 } : { frames: 6_000, raw: 100, http: 600 };
const maxWsPayload = 16 * 1024;

/** Replies that answer one client frame; anything else (new-request, replayed) is not one. */
const replies = new Set(['error', 'pong', 'joined', 'left']);
const errorCodes = new Set(['BAD_MESSAGE', 'UNKNOWN_EVENT', 'WEBHOOK_NOT_FOUND']);

interface Ctx {
  r: Running;
  rssStart: number;
  hook: string;
}

const test = suite<Ctx>(`fuzz (${full ? 'full' : 'quick'}, seed ${seed})`, {} as never);

test.before(async (ctx) => {
  ctx.r = await spawnMain({
    DATABASE_URL: await testDatabaseUrl(),
    HOOKY_MAX_WS_PAYLOAD: String(maxWsPayload),
    // The fuzzers measure the parser, not the rate limiter (tested in ratelimit.test.ts and realtime.test.ts).
    HOOKY_WS_RATE_LIMIT: '0',
  });
  ctx.hook = (await createWebhook(ctx.r.url)).id;
  ctx.rssStart = rssMiB(ctx.r.child.pid!);
});

test.after(async (ctx) => {
  ctx.r.child.kill('SIGTERM');
  await ctx.r.exited;
});

/** A WebSocket whose frames are awaited one at a time. */
function fuzzSocket(url: string) {
  return new Promise<{ ws: WebSocket; next: (timeoutMs: number) => Promise<{ event: string; code?: string } | { closed: number }> }>((resolve, reject) => {
    const ws = new WebSocket(url, 'hooky.v1');
    const queue: ({ event: string; code?: string } | { closed: number })[] = [];
    let waiting: ((x: (typeof queue)[number]) => void) | undefined;
    const push = (x: (typeof queue)[number]) => {
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        w(x);
      } else queue.push(x);
    };
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as { event: string; data: { code?: string } };
      if (f.event === 'connected') return resolve({ ws, next });
      if (replies.has(f.event)) push(f.data?.code === undefined ? { event: f.event } : { event: f.event, code: f.data.code });
    });
    ws.on('close', (code) => push({ closed: code }));
    ws.on('error', (e) => (ws.readyState === WebSocket.CONNECTING ? reject(e) : undefined));
    const next = (timeoutMs: number) =>
      queue.length > 0
        ? Promise.resolve(queue.shift()!)
        : new Promise<(typeof queue)[number]>((res, rej) => {
            const t = setTimeout(() => rej(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
            waiting = (x) => {
              clearTimeout(t);
              res(x);
            };
          });
  });
}

const describe = (c: WsCase) => `${c.kind}: ${(typeof c.payload === 'string' ? c.payload : c.payload.toString('hex')).slice(0, 120)}`;

test('generated WebSocket frames: each gets exactly its reply or its close; the process stays up', async (ctx) => {
  const wsUrl = `${ctx.r.url.replace('http', 'ws')}/ws`;
  const targets = { existing: ctx.hook, maxPayload: maxWsPayload, ceiling: hardPayloadCeiling(maxWsPayload) };
  const workers = 4;
  const byKind: Record<string, number> = {};
  const byReply: Record<string, number> = {};
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const rng = createRng(seed * 31 + w);
      let sock = await fuzzSocket(wsUrl);
      for (let i = 0; i < counts.frames / workers; i++) {
        const c = wsCase(rng, targets);
        byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
        const where = `seed ${seed}, worker ${w}, frame ${i}, ${describe(c)}`;
        sock.ws.send(c.payload, { binary: c.binary });
        const got = await sock.next(10_000).catch((e: Error): never => {
          throw new Error(`${e.message}: ${where}`);
        });
        if ('close' in c.expect) {
          assert.equal(got, { closed: c.expect.close }, where);
          byReply[`close ${c.expect.close}`] = (byReply[`close ${c.expect.close}`] ?? 0) + 1;
          sock = await fuzzSocket(wsUrl);
          continue;
        }
        assert.ok('event' in got, `closed (${JSON.stringify(got)}) where a reply was due: ${where}`);
        const reply = got as { event: string; code?: string };
        assert.ok(c.expect.reply.includes(reply.event), `${reply.event}: ${where}`);
        if (reply.event === 'error') assert.ok(errorCodes.has(reply.code!), `${reply.code}: ${where}`);
        const key = reply.code ?? reply.event;
        byReply[key] = (byReply[key] ?? 0) + 1;
      }
      sock.ws.close();
    }),
  );
  assert.is(ctx.r.child.exitCode, null, 'the server is still running');
  figures('fuzz: WebSocket frames', { seed, frames: counts.frames, durationMs: Date.now() - t0, byKind, byReply });
});

test('frame-level garbage after the handshake: the server closes or waits, and stays up', async (ctx) => {
  const rng = createRng(seed * 131);
  const outcomes: Record<string, number> = {};
  const t0 = Date.now();
  const one = async () => {
    const raw = await openRawWebSocket(ctx.r.port);
    await raw.next('connected');
    // Sometimes a plausible frame header first, so the garbage lands inside a frame.
    const head = rng.chance(0.5) ? Buffer.from([rng.pick([0x81, 0x82, 0x01, 0x88, 0x89, 0x8a, 0x80, 0x0f, 0xf1]), rng.int(0, 255)]) : Buffer.alloc(0);
    raw.socket.write(Buffer.concat([head, rng.bytes(rng.int(1, 600))]));
    const outcome = await Promise.race([raw.ended.then(() => 'closed by server'), new Promise<string>((r) => setTimeout(() => r('still open'), 300))]);
    const key = `${outcome}${raw.frames.length > 1 ? ' after replies' : ''}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    raw.socket.destroy();
  };
  for (let i = 0; i < counts.raw; i += 20) await Promise.all(Array.from({ length: Math.min(20, counts.raw - i) }, one));
  assert.is(ctx.r.child.exitCode, null, 'the server is still running');
  assert.ok((outcomes['closed by server'] ?? 0) > 0, JSON.stringify(outcomes));
  figures('fuzz: frame-level garbage', { seed, connections: counts.raw, durationMs: Date.now() - t0, outcomes });
});

/** One raw request on its own connection: the first response's status, or how it ended. */
function exchange(port: number, c: HttpCase): Promise<{ status: number | 'closed' | 'waiting'; body: string; sock: ReturnType<typeof connect> }> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (status: number | 'closed' | 'waiting', body = '') => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (status !== 'waiting') sock.destroy();
      resolve({ status, body, sock });
    };
    const timer = setTimeout(() => finish('waiting'), c.mayWait ? 500 : 5000);
    sock.on('error', () => finish('closed'));
    sock.on('close', () => finish('closed'));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(head);
      if (!status) return finish('closed');
      const length = /\r\ncontent-length: (\d+)/i.exec(head);
      const bodyLen = length ? Number(length[1]) : 0;
      // HEAD answers carry the length of a body they do not send.
      const isHead = c.bytes.subarray(0, 5).toString('latin1') === 'HEAD ';
      if (isHead || buf.length >= end + 4 + bodyLen) finish(Number(status[1]), isHead ? '' : buf.subarray(end + 4, end + 4 + bodyLen).toString());
    });
    sock.write(c.bytes);
  });
}

test('malformed HTTP requests: never a 5xx, never a hang past uWS\'s idle timeout; 2xx captures are stored', async (ctx) => {
  const targets = { existing: (await createWebhook(ctx.r.url)).id, missing: uniqueId('missing') };
  const byKind: Record<string, Record<string, number>> = {};
  const acked: string[] = [];
  const held: ReturnType<typeof connect>[] = [];
  const t0 = Date.now();
  const workers = 32;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const rng = createRng(seed * 7919 + w);
      for (let i = 0; i < counts.http / workers; i++) {
        const c = httpCase(rng, targets);
        const where = `seed ${seed}, worker ${w}, request ${i}, ${c.kind}: ${JSON.stringify(c.bytes.subarray(0, 160).toString('latin1'))}`;
        const { status, body, sock } = await exchange(ctx.r.port, c);
        const kind = (byKind[c.kind] ??= {});
        kind[String(status)] = (kind[String(status)] ?? 0) + 1;
        if (status === 'waiting') {
          assert.ok(c.mayWait, `no answer to a complete request: ${where}`);
          if (full && held.length < 200) held.push(sock);
          else sock.destroy();
          continue;
        }
        if (status === 'closed') {
          assert.ok(c.mayWait, `connection closed without an answer: ${where}`);
          continue;
        }
        assert.ok(status < 500, `${status} ${body}: ${where}`);
        if (c.capture && status === 200 && body !== '') acked.push(JSON.parse(body).id);
      }
    }),
  );
  const durationMs = Date.now() - t0;
  assert.is(ctx.r.child.exitCode, null, 'the server is still running');

  // No 2xx without its row.
  const list = async (before?: string) =>
    (await (await fetch(`${ctx.r.url}/api/webhooks/${targets.existing}/requests?limit=1000${before ? `&before=${before}` : ''}`)).json()) as {
      requests: { id: string }[];
      next: string | null;
    };
  const stored = new Set<string>();
  for (let page = await list(); ; page = await list(page.next!)) {
    for (const x of page.requests) stored.add(x.id);
    if (page.next === null) break;
  }
  assert.equal(acked.filter((id) => !stored.has(id)), [], 'every 2xx capture is stored');

  // Requests uWS is still waiting on are dropped by its 10 s idle timeout, not held for ever.
  let heldMs = 0;
  if (held.length > 0) {
    const heldAt = Date.now();
    const allClosed = Promise.all(held.map((s) => new Promise((r) => (s.destroyed ? r(null) : s.once('close', r)))));
    const outcome = await Promise.race([allClosed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 20_000))]);
    heldMs = Date.now() - heldAt;
    assert.is(outcome, 'closed', `${held.filter((s) => !s.destroyed).length} of ${held.length} connections still open after 20 s`);
  }
  figures('fuzz: malformed HTTP', { seed, requests: counts.http, durationMs, captured2xx: acked.length, heldUntilServerClosed: held.length, heldMs, byKind });
});

test('afterwards a clean client works, and the server logged no error', async (ctx) => {
  const { id } = await createWebhook(ctx.r.url);
  const c = await joined(`${ctx.r.url.replace('http', 'ws')}/ws`, id);
  const res = await fetch(`${ctx.r.url}/h/${id}`, { method: 'POST', body: 'after the fuzz' });
  assert.is(res.status, 200);
  const ack = (await res.json()) as { id: string };
  assert.is((await c.next('new-request')).data.id, ack.id);
  await c.close();
  assert.is((await fetch(`${ctx.r.url}/readyz`)).status, 200);
  // An `error` line would be a bug: an answer 500, a failed publish, an exception.
  assert.not.match(ctx.r.output(), / error /);
  figures('fuzz: server', { rssMiB: { start: +ctx.rssStart.toFixed(1), end: +rssMiB(ctx.r.child.pid!).toFixed(1) } });
});

test.run();
