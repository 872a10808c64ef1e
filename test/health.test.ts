import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { testDatabaseUrl } from './support/db.js';
import { startProxy } from './support/proxy.js';
import { createWebhook, startServer, type TestServer } from './support/server.js';

const test = suite<{ s: TestServer }>('health', {} as never);
test.before(async (ctx) => {
  ctx.s = await startServer();
});
test.after(async (ctx) => {
  await ctx.s.close();
});

test('GET /healthz answers 200 while the process runs', async (ctx) => {
  const res = await fetch(`${ctx.s.url}/healthz`);
  assert.is(res.status, 200);
  assert.equal(await res.json(), { status: 'ok' });
});

test('GET /readyz answers 200 when Postgres answers, 503 when it cannot be reached, then recovers', async (ctx) => {
  assert.is((await fetch(`${ctx.s.url}/readyz`)).status, 200);
  const url = await testDatabaseUrl();
  const u = new URL(url);
  const proxy = await startProxy(u.hostname, Number(u.port || 5432));
  const s = await startServer({ DATABASE_URL: proxy.via(url) });
  try {
    assert.is((await fetch(`${s.url}/readyz`)).status, 200);
    proxy.cut();
    const down = await fetch(`${s.url}/readyz`);
    assert.is(down.status, 503);
    assert.equal(await down.json(), { error: 'storage_unavailable', message: 'Storage is unavailable; retry later', status: 'storage_unavailable' });
    assert.is(down.headers.get('retry-after'), '1');
    assert.is((await fetch(`${s.url}/healthz`)).status, 200, 'liveness does not depend on Postgres');
    await proxy.restore();
    assert.is((await fetch(`${s.url}/readyz`)).status, 200);
  } finally {
    await s.close();
    await proxy.close();
  }
});

test('GET /metrics exposes the counters in Prometheus text format', async (ctx) => {
  const { id } = await createWebhook(ctx.s.url);
  await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'x' });
  await fetch(`${ctx.s.url}/h/unknown-hook`, { method: 'POST', body: 'x' });
  const res = await fetch(`${ctx.s.url}/metrics`);
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  for (const name of [
    'hooky_captures_total',
    'hooky_capture_errors_total',
    'hooky_batch_rows_bucket',
    'hooky_publishes_total',
    'hooky_websocket_connections',
    'hooky_room_memberships',
    'hooky_websocket_backpressure_closes_total',
  ]) {
    assert.ok(text.includes(`# TYPE ${name.replace(/_bucket$/, '')} `), name);
  }
  assert.match(text, /^hooky_captures_total [1-9]\d*$/m);
  assert.match(text, /^hooky_capture_errors_total\{status="404"\} [1-9]\d*$/m);
  // Labelled counters export their known values from the start, at 0 until the first one.
  for (const series of ['hooky_capture_errors_total{status="413"}', 'hooky_websocket_errors_total{code="RATE_LIMITED"}', 'hooky_websocket_rejected_upgrades_total{status="401"}', 'hooky_retention_deleted_total{rule="max_age"}']) {
    assert.ok(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} \\d+$`, 'm').test(text), series);
  }
});

test('GET /metrics also exposes the process: CPU, memory, heap, GC and event-loop lag', async (ctx) => {
  const text = await (await fetch(`${ctx.s.url}/metrics`)).text();
  for (const name of [
    'process_cpu_user_seconds_total',
    'process_resident_memory_bytes',
    'nodejs_heap_size_used_bytes',
    'nodejs_gc_duration_seconds',
    'nodejs_eventloop_lag_seconds',
    'hooky_event_loop_delay_seconds',
  ]) {
    assert.ok(text.includes(`# TYPE ${name} `), name);
  }
  assert.match(text, /^process_resident_memory_bytes [1-9]\d*$/m);
});

test.run();
