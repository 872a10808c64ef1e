/**
 * Postgres going away under load, with hooky as its own process (so its RSS can be watched):
 * while it is down captures get 503 with Retry-After and /readyz 503, the process stays up and
 * its memory bounded; when it is back, hooky recovers by itself and no acknowledged capture is
 * missing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startEmbedded, type Embedded } from '../src/db/embedded.js';
import { createLogger } from '../src/log.js';
import { testDatabaseUrl } from './support/db.js';
import { startSenders } from './support/load.js';
import { eventually, figures, metric, rssMiB, rssPeak } from './support/observe.js';
import { spawnMain, type Running } from './support/process.js';
import { startProxy } from './support/proxy.js';
import { createWebhook } from './support/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const status = async (url: string) => (await fetch(url)).status;

interface Outage {
  /** Takes the database away; resolves once it is away. */
  down(): Promise<void>;
  /** Gives it back; resolves once it is back. */
  up(): Promise<void>;
}

/**
 * The scenario every test shares: senders capture while the database is up, then through an
 * outage of `downMs`, then until captures are acknowledged again. Returns what was observed.
 */
async function underOutage(r: Running, dbUrl: string, outage: Outage, { downMs = 2000, body = '{"n":1}', concurrency = 20 } = {}) {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const { id } = await createWebhook(r.url);
    const senders = startSenders(r.url, id, { concurrency, body });
    await eventually(() => senders.acked().length >= 200, 10_000, '200 captures before the outage');
    const rssBefore = rssMiB(r.child.pid!);
    const peak = rssPeak(r.child.pid!);

    await outage.down();
    const downAt = Date.now();
    // Senders that start while it is down: the ones above may be waiting on the batch that was
    // cut off, which hooky settles (finds out whether it committed) before answering.
    const fresh = startSenders(r.url, id, { concurrency: 5, body });
    // Answers given in the first moments may belong to requests committed just before.
    await sleep(300);
    const readyDuring: number[] = [];
    let queuePeak = 0;
    while (Date.now() - downAt < downMs) {
      readyDuring.push(await status(`${r.url}/readyz`));
      queuePeak = Math.max(queuePeak, await metric(r.url, 'hooky_writer_queue'));
      await sleep(100);
    }
    const upAt = Date.now();
    const during = [...senders.between(downAt + 300, upAt), ...fresh.between(downAt + 300, upAt)];
    const rssDown = peak.stop();

    await outage.up();
    const restoredAt = Date.now();
    await eventually(() => senders.between(restoredAt, Infinity).some((o) => o.status === 200), 20_000, 'captures acknowledged again');
    const recoveredAt = senders.between(restoredAt, Infinity).find((o) => o.status === 200)!.at;
    await eventually(async () => (await status(`${r.url}/readyz`)) === 200, 10_000, '/readyz 200 again');
    await sleep(300);
    await senders.stop();
    await fresh.stop();

    const acked = [...senders.acked(), ...fresh.acked()];
    const stored = new Set((await sql`select id::text from requests where webhook_id = ${id}`).map((x) => x.id as string));
    return {
      during,
      readyDuring,
      queuePeak,
      acked,
      missing: acked.filter((a) => !stored.has(a)),
      stored,
      outcomes: [...senders.outcomes, ...fresh.outcomes],
      rss: { before: rssBefore, peakWhileDown: rssDown, after: rssMiB(r.child.pid!) },
      recoveryMs: recoveredAt - restoredAt,
    };
  } finally {
    await sql.end();
  }
}

function count(list: { status: number | string; error?: string }[]) {
  const out: Record<string, number> = {};
  for (const o of list) {
    const key = o.error ? `${o.status} ${o.error}` : String(o.status);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

const test = suite('outage: Postgres goes away under load');

test('connections cut and refused: 503 with Retry-After and /readyz 503 while down, then recovery with nothing acknowledged missing', async () => {
  const dbUrl = await testDatabaseUrl();
  const u = new URL(dbUrl);
  const proxy = await startProxy(u.hostname, Number(u.port || 5432));
  const r = await spawnMain({ DATABASE_URL: proxy.via(dbUrl) });
  try {
    const seen = await underOutage(r, dbUrl, {
      down: async () => proxy.cut(),
      up: () => proxy.restore(),
    });
    assert.ok(seen.during.length > 20, `captures were tried while down: ${seen.during.length}`);
    for (const o of seen.during) {
      assert.is(o.status, 503, JSON.stringify(o));
      assert.is(o.retryAfter, '1');
      assert.is(o.error, 'storage_unavailable');
    }
    assert.ok(seen.readyDuring.length > 0 && seen.readyDuring.every((s) => s === 503), `readyz while down: ${seen.readyDuring}`);
    assert.is(r.child.exitCode, null, 'still running');
    assert.equal(seen.missing, [], 'every acknowledged capture is stored');
    // The batch whose connection was cut is settled once Postgres is back (the outage is shorter
    // than HOOKY_SETTLE_TIMEOUT_MS), so no row is stored behind a 503.
    assert.is(seen.stored.size - seen.acked.length, 0, 'stored without a 2xx');
    assert.ok(seen.rss.peakWhileDown - seen.rss.before < 64, `RSS ${JSON.stringify(seen.rss)}`);
    figures('Postgres cut (proxy)', {
      storedWithout2xx: seen.stored.size - seen.acked.length,
      whileDown: count(seen.during),
      readyzWhileDown: seen.readyDuring.length,
      writerQueuePeak: seen.queuePeak,
      acked: seen.acked.length,
      recoveryMs: seen.recoveryMs,
      rssMiB: seen.rss,
    });
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
    await proxy.close();
  }
});

test('a network partition (Postgres silent): the writer queue stays within HOOKY_QUEUE_MAX_BYTES, the excess gets 503 overloaded', async () => {
  const dbUrl = await testDatabaseUrl();
  const u = new URL(dbUrl);
  const proxy = await startProxy(u.hostname, Number(u.port || 5432));
  // Captures waiting for the writer are bounded by the queue plus the one batch in flight.
  const queueMaxBytes = 1024 * 1024;
  const batchMaxBytes = 64 * 1024;
  const body = JSON.stringify({ pad: 'x'.repeat(16 * 1024) });
  const r = await spawnMain({
    DATABASE_URL: proxy.via(dbUrl),
    HOOKY_QUEUE_MAX_BYTES: String(queueMaxBytes),
    HOOKY_BATCH_MAX_BYTES: String(batchMaxBytes),
  });
  try {
    const seen = await underOutage(
      r,
      dbUrl,
      { down: async () => proxy.stall(), up: () => proxy.restore() },
      { downMs: 3000, body, concurrency: 200 },
    );
    // Nothing commits while Postgres is silent; the queue fills up to its bound and the rest is refused.
    const byCode = count(seen.during);
    assert.ok((byCode['503 overloaded'] ?? 0) > 0, JSON.stringify(byCode));
    for (const o of seen.during) {
      assert.is(o.status, 503, JSON.stringify(o));
      assert.is(o.retryAfter, '1');
    }
    const payloadBytes = body.length; // the stored JSON is larger still, so fewer fit
    assert.ok(seen.queuePeak > 0 && seen.queuePeak <= (queueMaxBytes + batchMaxBytes) / payloadBytes, `queue peak ${seen.queuePeak}`);
    assert.ok(seen.readyDuring.every((s) => s === 503), `readyz while down: ${seen.readyDuring}`);
    assert.is(r.child.exitCode, null);
    assert.equal(seen.missing, [], 'every acknowledged capture is stored');
    // The batch in flight when the network went silent may have committed, unacknowledged.
    // A batch takes rows until it reaches batchMaxBytes, so it holds at most ceil(max / size) of them.
    assert.ok(seen.stored.size - seen.acked.length <= Math.ceil(batchMaxBytes / payloadBytes), `stored without a 2xx: ${seen.stored.size - seen.acked.length}`);
    assert.ok(seen.rss.peakWhileDown - seen.rss.before < 64, `RSS ${JSON.stringify(seen.rss)}`);
    figures('Postgres silent (proxy stall)', {
      storedWithout2xx: seen.stored.size - seen.acked.length,
      whileDown: byCode,
      writerQueuePeak: seen.queuePeak,
      acked: seen.acked.length,
      recoveryMs: seen.recoveryMs,
      rssMiB: seen.rss,
    });
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
    await proxy.close();
  }
});

test('Postgres stopped and started again (an embedded cluster of its own): 503 while down, recovery, nothing acknowledged missing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hooky-outage-'));
  const log = createLogger('warn');
  let pg: Embedded | undefined = await startEmbedded(dir, log);
  const { port } = pg;
  const r = await spawnMain({ DATABASE_URL: pg.url });
  try {
    const seen = await underOutage(r, pg.url, {
      // A real fast shutdown: open transactions roll back, connections get 57P01, the port closes.
      down: async () => {
        await pg!.stop();
        pg = undefined;
      },
      up: async () => {
        pg = await startEmbedded(dir, log, { port });
      },
    });
    const byCode = count(seen.during);
    assert.ok(seen.during.length > 20, JSON.stringify(byCode));
    for (const o of seen.during) {
      assert.is(o.status, 503, JSON.stringify(o));
      assert.is(o.retryAfter, '1');
      assert.is(o.error, 'storage_unavailable');
    }
    assert.ok(seen.readyDuring.every((s) => s === 503), `readyz while down: ${seen.readyDuring}`);
    assert.is(r.child.exitCode, null);
    assert.equal(seen.missing, [], 'every acknowledged capture is stored');
    // A fast shutdown rolls back what it interrupts, so a 503 never hides a committed row here.
    assert.is(seen.stored.size, seen.acked.length);
    assert.ok(seen.rss.peakWhileDown - seen.rss.before < 64, `RSS ${JSON.stringify(seen.rss)}`);
    figures('Postgres stop/start (embedded)', {
      whileDown: byCode,
      acked: seen.acked.length,
      recoveryMs: seen.recoveryMs,
      rssMiB: seen.rss,
    });
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a database that refuses connections (FATAL at connect): SIGTERM during it still ends within HOOKY_SHUTDOWN_TIMEOUT_MS', async () => {
  const admin = postgres(await testDatabaseUrl(), { max: 1, onnotice: () => {} });
  const name = `hooky_refusing_${process.pid}`;
  await admin.unsafe(`drop database if exists ${name}`);
  await admin.unsafe(`create database ${name}`);
  const url = new URL(await testDatabaseUrl());
  url.pathname = `/${name}`;
  // A settle that could take all of 30 s: the shutdown, not the settle, has to end it.
  const r = await spawnMain({ DATABASE_URL: url.toString(), HOOKY_SETTLE_TIMEOUT_MS: '30000', HOOKY_SHUTDOWN_TIMEOUT_MS: '1500' });
  try {
    const { id } = await createWebhook(r.url);
    const senders = startSenders(r.url, id, { concurrency: 20, body: '{"n":1}' });
    await eventually(() => senders.acked().length >= 200, 10_000, '200 captures first');
    // As `ALTER DATABASE … ALLOW_CONNECTIONS false` does to an outage: every session ended, and
    // each new connection refused with a FATAL error, which postgres.js meets by trying again.
    await admin.unsafe(`alter database ${name} allow_connections false`);
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name}`;
    await sleep(300);
    const asked = Date.now();
    r.child.kill('SIGTERM');
    await r.exited;
    const took = Date.now() - asked;
    await senders.stop();
    assert.ok(took < 1500 + 2000, `exited ${took} ms after SIGTERM (shutdown timeout 1500 ms)`);
  } finally {
    r.child.kill('SIGKILL');
    await admin.unsafe(`alter database ${name} allow_connections true`);
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
});

test.run();
