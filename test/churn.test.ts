/**
 * Connection churn: 2,000 connect/join/close cycles, closed every way a client can go. Open
 * sockets and room memberships must return to zero and the server's memory near its start.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { testDatabaseUrl } from './support/db.js';
import { eventually, figures, metric, rssMiB } from './support/observe.js';
import { spawnMain } from './support/process.js';
import { createWebhook } from './support/server.js';
import { openClient } from './support/ws.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const test = suite('churn');

test('2,000 connect/join/close cycles: connections and memberships return to zero, RSS near its start', async () => {
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl() });
  const wsUrl = `${r.url.replace('http', 'ws')}/ws`;
  try {
    const hooks = await Promise.all(Array.from({ length: 10 }, () => createWebhook(r.url)));
    let n = 0;
    /** One cycle: connect, join one or two rooms, then go in one of four ways. */
    const cycle = async () => {
      const i = n++;
      const c = await openClient(wsUrl);
      await c.next('connected');
      const rooms = [hooks[i % hooks.length]!.id, hooks[(i * 7 + 3) % hooks.length]!.id];
      for (const id of rooms) c.send({ event: 'join', data: { webhookId: id } });
      await c.next('joined');
      await c.next('joined');
      switch (i % 4) {
        case 0: // a clean close
          await c.close();
          break;
        case 1: // vanishes without a close frame
          c.ws.terminate();
          break;
        case 2: // leaves first, then closes
          c.send({ event: 'leave', data: { webhookId: rooms[0] } });
          await c.next('left');
          await c.close();
          break;
        default: // closes with its own code while a join is still in flight
          c.send({ event: 'join', data: { webhookId: hooks[(i + 1) % hooks.length]!.id } });
          c.ws.close(4000, 'bye');
          await c.closed;
      }
    };
    const run = async (cycles: number, concurrency: number) => {
      const target = n + cycles;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (n < target) await cycle();
        }),
      );
    };
    const settled = async () => {
      await eventually(
        async () => (await metric(r.url, 'hooky_websocket_connections')) === 0 && (await metric(r.url, 'hooky_room_memberships')) === 0,
        10_000,
        'connections and memberships back to zero',
      );
    };

    // A warm-up lets the JIT, uWS's pools and V8's heap reach their working size first.
    await run(200, 20);
    await settled();
    await sleep(500);
    const rssStart = rssMiB(r.child.pid!);
    const t0 = Date.now();
    await run(2000, 20);
    const tookMs = Date.now() - t0;
    await settled();
    const rssEnd = rssMiB(r.child.pid!);
    await sleep(1000);
    const rssLater = rssMiB(r.child.pid!);
    assert.is(await metric(r.url, 'hooky_websocket_connections'), 0);
    assert.is(await metric(r.url, 'hooky_room_memberships'), 0);
    // A leak of even 10 KiB per cycle would be 20 MiB here.
    assert.ok(rssLater - rssStart < 16, `RSS ${rssStart.toFixed(1)} → ${rssLater.toFixed(1)} MiB`);
    // Nothing was mistaken for a backpressure close or a rate-limit close.
    assert.is(await metric(r.url, 'hooky_websocket_backpressure_closes_total'), 0);
    assert.is(await metric(r.url, 'hooky_websocket_rate_limit_closes_total'), 0);
    figures('churn', {
      cycles: 2000,
      tookMs,
      rssMiB: { start: +rssStart.toFixed(1), end: +rssEnd.toFixed(1), oneSecondLater: +rssLater.toFixed(1) },
    });
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
  }
});

test.run();
