/**
 * Issue 9, items 1 and 2: reading large captures back (REST pages, `join` replays) and receiving
 * many large bodies at once must keep the server's memory bounded, with `/healthz` answering,
 * never a crash. The attacks run here scaled down, with small limits; bench/memory.ts runs them
 * at their full size with the default settings.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import * as assert from 'uvu/assert';
import { bodiesInFlight, listings, replays, seedCaptures, watch } from './support/attacks.js';
import { testDatabaseUrl } from './support/db.js';
import { http } from './support/http.js';
import { eventually, figures, metric, rssMiB } from './support/observe.js';
import { spawnMain } from './support/process.js';
import { openRawWebSocket } from './support/rawws.js';
import { createWebhook, startServer } from './support/server.js';
import { createClient } from '../src/client/index.js';
import { withCleanup } from './support/suite.js';
import { openClient } from './support/ws.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const fromStart = '00000000-0000-7000-8000-000000000000';

interface Listed {
  requests: { id: string; size: number }[];
  next: string | null;
}

async function list(base: string, id: string, query = ''): Promise<{ status: number; page: Listed; bytes: number; headers: Headers }> {
  const res = await fetch(`${base}/api/webhooks/${id}/requests${query}`);
  const text = await res.text();
  return { status: res.status, page: res.status === 200 ? (JSON.parse(text) as Listed) : ({} as Listed), bytes: Buffer.byteLength(text), headers: res.headers };
}

/** A GET whose answer is never read, holding its bytes on the server; `close()` ends it. */
function unreadGet(port: number, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      // Read the first bytes (so the answer has started), then stop reading.
      s.once('data', () => {
        s.pause();
        resolve(s);
      });
    });
    s.on('error', reject);
  });
}

/** Sends a request's head (and optionally part of its body) and resolves with the answer's head. */
function rawRequest(port: number, head: string, body?: Buffer): Promise<{ socket: Socket; answer: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      s.write(head);
      if (body) s.write(body);
      let got = '';
      const answer = new Promise<string>((res) => {
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (got.includes('\r\n\r\n')) res(got);
        });
        s.on('close', () => res(got));
      });
      resolve({ socket: s, answer });
    });
    s.on('error', reject);
  });
}

const paging = withCleanup('GET /api/webhooks/:id/requests pages by bytes');

paging('a page ends at HOOKY_MAX_PAGE_BYTES of payload and `next` continues it, down to the last request', async (ctx) => {
  const s = await startServer({ HOOKY_MAX_PAGE_BYTES: String(64 * KiB) });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  // Each payload is a little over 20 KB: three fit in 64 KiB, four do not.
  for (let i = 0; i < 10; i++) assert.is((await http('POST', `${s.url}/h/${id}`, 'x'.repeat(20 * KiB))).status, 200);
  const seen: string[] = [];
  let query = '?limit=1000';
  for (;;) {
    const { status, page, bytes } = await list(s.url, id, query);
    assert.is(status, 200);
    assert.ok(page.requests.length >= 1);
    assert.ok(bytes <= 64 * KiB + 100, `a page of ${bytes} bytes`);
    seen.push(...page.requests.map((r) => r.id));
    if (page.next === null) break;
    assert.is(page.requests.length, 3);
    query = `?limit=1000&before=${page.next}`;
  }
  assert.is(seen.length, 10);
  assert.equal(seen, [...seen].sort().reverse(), 'newest first, nothing twice');
  // The row limit still applies beneath the byte limit.
  const two = await list(s.url, id, '?limit=2');
  assert.is(two.page.requests.length, 2);
  assert.is(two.page.next, two.page.requests[1]!.id);
});

paging('a request larger than the page is still listed, alone on its page', async (ctx) => {
  const s = await startServer({ HOOKY_MAX_PAGE_BYTES: String(64 * KiB) });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  await http('POST', `${s.url}/h/${id}`, 'small');
  await http('POST', `${s.url}/h/${id}`, 'y'.repeat(300 * KiB));
  await http('POST', `${s.url}/h/${id}`, 'small');
  const first = await list(s.url, id);
  assert.equal(first.page.requests.map((r) => r.size), [5], 'the large one does not fit after it');
  const second = await list(s.url, id, `?before=${first.page.next}`);
  assert.equal(second.page.requests.map((r) => r.size), [300 * KiB]);
  const third = await list(s.url, id, `?before=${second.page.next}`);
  assert.equal(third.page.requests.map((r) => r.size), [5]);
  assert.is(third.page.next, null);
});

const ceiling = withCleanup('HOOKY_MAX_READ_BYTES: one ceiling for every listing and replay');

ceiling('past it a listing answers 503 overloaded with Retry-After, a replay an OVERLOADED error with retryAfterMs; both pass once the bytes are given back', async (ctx) => {
  const s = await startServer({ HOOKY_MAX_READ_BYTES: String(1 * MiB), HOOKY_MAX_BODY_BYTES: String(12 * MiB) });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  const big = JSON.parse((await http('POST', `${s.url}/h/${id}`, 'z'.repeat(10 * MiB))).text).id as string;
  await http('POST', `${s.url}/h/${id}`, 'small');

  // A client that asks for the 10 MB request and never reads it: what the kernel does not take
  // stays held by the server, counted against the ceiling (it passes alone, being the only one).
  const slow = await unreadGet(s.server.port, `/api/webhooks/${id}/requests/${big}`);
  ctx.cleanup.push(() => slow.destroy());
  await eventually(async () => (await metric(s.url, 'hooky_read_bytes_held')) > 0, 2000, 'bytes held for the slow reader');

  const refused = await list(s.url, id, '?limit=1');
  assert.is(refused.status, 503);
  assert.is(refused.headers.get('retry-after'), '1');
  const body = await (await fetch(`${s.url}/api/webhooks/${id}/requests?limit=1`)).json();
  assert.is((body as { error: string }).error, 'overloaded');

  const c = await openClient(s.wsUrl);
  ctx.cleanup.push(() => c.close());
  await c.next('connected');
  c.send({ event: 'join', data: { webhookId: id, since: fromStart }, ref: 'r1' });
  assert.is((await c.next('joined')).ref, 'r1');
  const err = await c.next('error');
  assert.is(err.ref, 'r1');
  assert.is(err.data.code, 'OVERLOADED');
  assert.is(err.data.webhookId, id);
  assert.is(err.data.last, fromStart);
  assert.is(err.data.retryAfterMs, 1000);

  // The slow reader goes away: its bytes are given back, and the same requests pass.
  slow.destroy();
  await eventually(async () => (await metric(s.url, 'hooky_read_bytes_held')) === 0, 5000, 'bytes given back');
  assert.is((await list(s.url, id, '?limit=1')).status, 200);
  c.send({ event: 'join', data: { webhookId: id, since: fromStart }, ref: 'r2' });
  const replayed = await c.next('replayed', 10_000);
  assert.equal(replayed.data.count, 2);
  assert.ok((await metric(s.url, 'hooky_read_refusals_total')) >= 2);
});

ceiling('the SDK joins again after OVERLOADED, from where the replay stopped, and misses nothing', async (ctx) => {
  const s = await startServer({ HOOKY_MAX_READ_BYTES: String(1 * MiB), HOOKY_MAX_BODY_BYTES: String(12 * MiB) });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(JSON.parse((await http('POST', `${s.url}/h/${id}`, `small ${i}`)).text).id);
  const big = JSON.parse((await http('POST', `${s.url}/h/${id}`, 'z'.repeat(10 * MiB))).text).id as string;
  const slow = await unreadGet(s.server.port, `/api/webhooks/${id}/requests/${big}`);
  ctx.cleanup.push(() => slow.destroy());
  await eventually(async () => (await metric(s.url, 'hooky_read_bytes_held')) > 0, 2000, 'bytes held for the slow reader');

  const client = createClient(s.wsUrl, { minDelayMs: 50, maxDelayMs: 200 });
  ctx.cleanup.push(() => client.close());
  const got: string[] = [];
  const errors: string[] = [];
  client.on('new-request', (r) => got.push(r.id));
  client.on('error', (e) => errors.push(e.code));
  await client.join(id, { since: fromStart });
  await eventually(() => errors.includes('OVERLOADED'), 5000, 'an OVERLOADED refusal');
  slow.destroy();
  await eventually(() => got.length === 4, 10_000, 'every request, once the bytes are given back');
  assert.equal(got, [...ids, big]);
});

const replay = withCleanup('join with since replays page by page, paced by the socket');

replay('a replay into a client that does not read holds about one page, and delivers everything once it reads', async (ctx) => {
  // A send buffer of 1 MiB: without pacing, the 6 MB replay would pass it and close the socket.
  const s = await startServer({ HOOKY_MAX_PAGE_BYTES: String(64 * KiB), HOOKY_WS_MAX_BUFFER: String(1 * MiB) });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  const n = 30;
  for (let i = 0; i < n; i++) assert.is((await http('POST', `${s.url}/h/${id}`, `${i}:`.padEnd(200 * KiB, 'r'))).status, 200);

  const raw = await openRawWebSocket(s.server.port);
  ctx.cleanup.push(() => raw.socket.destroy());
  await raw.next('connected');
  raw.socket.pause();
  raw.sendFrame(JSON.stringify({ event: 'join', data: { webhookId: id, since: fromStart }, ref: 7 }));
  // Give the server time to push all it would; it stops at about one page past what the kernel takes.
  await new Promise((r) => setTimeout(r, 1000));
  const held = await metric(s.url, 'hooky_read_bytes_held');
  assert.ok(held <= 210 * KiB, `${held} bytes held for a paused replay (one page is one 200 KB request)`);
  assert.is(await metric(s.url, 'hooky_websocket_backpressure_closes_total'), 0);

  raw.socket.resume();
  const done = await raw.next('replayed', 20_000);
  assert.equal(done.data, { webhookId: id, room: `webhook:${id}`, count: n, truncated: false, last: done.data.last });
  const ids = raw.frames.filter((f) => f.event === 'new-request').map((f) => f.data.id as string);
  assert.is(ids.length, n);
  assert.is(ids[n - 1], done.data.last);
  assert.equal(ids, [...ids].sort(), 'oldest first');
  assert.is(await metric(s.url, 'hooky_read_bytes_held'), 0);
});

replay('ten joins with since on one socket replay one after the other, each complete, HOOKY_REPLAY_LIMIT still truncating', async (ctx) => {
  const s = await startServer({ HOOKY_MAX_PAGE_BYTES: String(64 * KiB), HOOKY_REPLAY_LIMIT: '12' });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  for (let i = 0; i < 15; i++) await http('POST', `${s.url}/h/${id}`, 'q'.repeat(30 * KiB));
  const c = await openClient(s.wsUrl);
  ctx.cleanup.push(() => c.close());
  await c.next('connected');
  for (let ref = 1; ref <= 10; ref++) c.send({ event: 'join', data: { webhookId: id, since: fromStart }, ref });
  const ends = [];
  for (let i = 0; i < 10; i++) ends.push(await c.next('replayed', 20_000));
  assert.equal(ends.map((e) => e.ref), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'in order: one replay at a time');
  for (const e of ends) {
    assert.is(e.data.count, 12);
    assert.is(e.data.truncated, true);
  }
  for (let ref = 1; ref <= 10; ref++) {
    const mine = c.frames.filter((f) => f.event === 'new-request' && f.ref === ref);
    assert.is(mine.length, 12);
    assert.is(mine[11]!.data.id, ends[ref - 1]!.data.last);
  }
});

const attack = withCleanup('the attacks, against hooky in its own process');

attack('large captures read back by 10 replays on one socket and 8 listings at once: RSS stays bounded and /healthz answers within 1 s', async (ctx) => {
  const r = await spawnMain({
    DATABASE_URL: await testDatabaseUrl(),
    HOOKY_MAX_BODY_BYTES: String(2 * MiB),
    HOOKY_MAX_PAGE_BYTES: String(1 * MiB),
    HOOKY_MAX_READ_BYTES: String(8 * MiB),
  });
  ctx.cleanup.push(async () => {
    r.child.kill('SIGKILL');
    await r.exited;
  });
  const { id } = await createWebhook(r.url);
  // 12 payloads of ~1.9 MB (random bytes are stored base64): 23 MB, read back 18 times at once.
  await seedCaptures(r.url, id, 12, 1400 * KiB);
  const before = rssMiB(r.child.pid!);
  const w = watch(r.url, r.child.pid!);
  const [replayed, listed] = await Promise.all([replays(`${r.url.replace('http', 'ws')}/ws`, id, 10, 60_000), listings(r.url, id, 8)]);
  const seen = await w.stop();
  figures('read-back attack', { before: +before.toFixed(1), ...seen, replayed, listed: listed.map((l) => l.status) });
  assert.is(r.child.exitCode, null, 'alive');
  assert.ok(seen.peakRssMiB - before < 150, `RSS ${before.toFixed(0)} → ${seen.peakRssMiB} MiB`);
  assert.ok(seen.slowestHealthzMs < 1000, `slowest /healthz ${seen.slowestHealthzMs} ms`);
  assert.is(seen.healthzMissed, 0);
  // Each replay ends: complete, or refused with OVERLOADED (a client retries it); never lost.
  assert.is(replayed.replayed + replayed.errors.length, 10);
  assert.ok(replayed.errors.every((e) => e === 'OVERLOADED'), replayed.errors.join());
  assert.ok(replayed.replayed >= 1);
  for (const l of listed) assert.ok(l.status === 200 || (l.status === 503 && l.retryAfter === '1'), `listing answered ${l.status}`);
  assert.ok(listed.some((l) => l.status === 200));
});

attack('200 connections holding large bodies: past HOOKY_MAX_INFLIGHT_BYTES they get 503 before the body is read; RSS stays bounded and falls back once they close', async (ctx) => {
  const r = await spawnMain({
    DATABASE_URL: await testDatabaseUrl(),
    HOOKY_MAX_BODY_BYTES: String(2 * MiB),
    HOOKY_MAX_INFLIGHT_BYTES: String(16 * MiB),
  });
  ctx.cleanup.push(async () => {
    r.child.kill('SIGKILL');
    await r.exited;
  });
  const { id } = await createWebhook(r.url);
  const before = rssMiB(r.child.pid!);
  const w = watch(r.url, r.child.pid!);
  // 200 × 2 MiB = 400 MiB offered; 16 MiB may be received at once.
  const held = await bodiesInFlight(r.port, id, 200, 2 * MiB, 2 * MiB - 1);
  ctx.cleanup.push(() => held.release());
  const holding = rssMiB(r.child.pid!);
  const inflight = await metric(r.url, 'hooky_inflight_body_bytes');
  const refused = held.answered.filter((s) => s === 503).length;
  // The rest were answered 503 and closed by the server (some see the reset before the answer).
  const open = held.open();
  // A capture with a Content-Length past what is left is refused at once, before its body is sent.
  const early = await rawRequest(r.port, `POST /h/${id} HTTP/1.1\r\nHost: x\r\nContent-Length: ${1 * MiB}\r\n\r\n`);
  const earlyAnswer = await early.answer;
  early.socket.destroy();
  held.release();
  await eventually(async () => (await metric(r.url, 'hooky_inflight_body_bytes')) === 0, 5000, 'in-flight bytes given back');
  // Once they are gone, captures pass again, with a Content-Length and chunked.
  assert.is((await http('POST', `${r.url}/h/${id}`, randomBytes(MiB))).status, 200);
  const chunked = await rawRequest(r.port, `POST /h/${id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
  assert.match(await chunked.answer, /^HTTP\/1\.1 200/);
  chunked.socket.destroy();
  await new Promise((res) => setTimeout(res, 3000));
  const after = rssMiB(r.child.pid!);
  const seen = await w.stop();
  figures('bodies in flight', { before: +before.toFixed(1), holding: +holding.toFixed(1), after: +after.toFixed(1), ...seen, refused, open, inflight });
  assert.is(r.child.exitCode, null, 'alive');
  assert.ok(inflight <= 16 * MiB, `${inflight} bytes in flight`);
  assert.ok(open <= 8, `${open} connections still sending: 16 MiB holds 8 bodies of 2 MiB`);
  assert.ok(refused >= 1 && held.answered.every((s) => s === 503), `answers ${held.answered.join()}`);
  assert.match(earlyAnswer, /^HTTP\/1\.1 503/);
  assert.match(earlyAnswer, /retry-after: 1/i);
  assert.match(earlyAnswer, /"error":"overloaded"/);
  assert.ok(seen.peakRssMiB - before < 120, `RSS ${before.toFixed(0)} → peak ${seen.peakRssMiB} MiB`);
  assert.ok(after - before < 80, `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MiB after the connections closed`);
  assert.ok(seen.slowestHealthzMs < 1000, `slowest /healthz ${seen.slowestHealthzMs} ms`);
});

attack('a chunked body is counted as it streams: past the ceiling it is answered 503 mid-body', async (ctx) => {
  const s = await startServer({ HOOKY_MAX_INFLIGHT_BYTES: String(1 * MiB) });
  ctx.cleanup.push(() => s.close());
  const { id } = await createWebhook(s.url);
  // One body holds 900 KiB of the 1 MiB in flight…
  const holder = await rawRequest(s.server.port, `POST /h/${id} HTTP/1.1\r\nHost: x\r\nContent-Length: ${900 * KiB}\r\n\r\n`, Buffer.alloc(100 * KiB, 1));
  ctx.cleanup.push(() => holder.socket.destroy());
  await eventually(async () => (await metric(s.url, 'hooky_inflight_body_bytes')) === 900 * KiB, 2000, 'declared bytes held');
  // …so a chunked one passes while small, and is refused once it streams past what is left.
  const chunk = Buffer.alloc(64 * KiB, 0x62);
  const framed = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
  const streaming = await rawRequest(s.server.port, `POST /h/${id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`, framed);
  ctx.cleanup.push(() => streaming.socket.destroy());
  for (let i = 0; i < 4 && !streaming.socket.destroyed; i++) streaming.socket.write(framed);
  const answer = await streaming.answer;
  assert.match(answer, /^HTTP\/1\.1 503/);
  assert.match(answer, /"error":"overloaded"/);
  assert.is(await metric(s.url, 'hooky_capture_errors_total{status="503"}'), 1, 'counted among the capture errors');
  holder.socket.destroy();
  await eventually(async () => (await metric(s.url, 'hooky_inflight_body_bytes')) === 0, 5000, 'every hold given back');
});

paging.run();
ceiling.run();
replay.run();
attack.run();
