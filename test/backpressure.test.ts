/**
 * A consumer that joins a room and then never reads, while 10 MB of captures flow into it. It
 * must be closed at the backpressure limit rather than buffered, the server's memory must stay
 * bounded, and the other members of the room must miss nothing.
 */
import { Agent, request } from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { testDatabaseUrl } from './support/db.js';
import { eventually, figures, metric, rssMiB, rssPeak } from './support/observe.js';
import { spawnMain } from './support/process.js';
import { openRawWebSocket } from './support/rawws.js';
import { createWebhook } from './support/server.js';
import { joined } from './support/ws.js';

const KiB = 1024;

/** POSTs `n` bodies with `concurrency` keep-alive senders; returns the acknowledged ids in order of answer. */
async function captureMany(base: string, webhookId: string, n: number, body: string, concurrency: number, onAck: (count: number) => void) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const acked: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const id = await new Promise<string>((resolve, reject) => {
          const req = request(`${base}/h/${webhookId}`, { method: 'POST', agent }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text).id) : reject(new Error(`${res.statusCode} ${text}`))));
          });
          req.on('error', reject);
          req.end(body);
        });
        acked.push(id);
        onAck(acked.length);
      }
    }),
  );
  agent.destroy();
  return acked;
}

const test = suite('backpressure: a consumer that never reads');

test('is closed at HOOKY_WS_MAX_BUFFER while 10 MB flow; RSS stays bounded; the rest of the room misses nothing', async () => {
  const maxBuffer = 256 * KiB;
  const r = await spawnMain({ DATABASE_URL: await testDatabaseUrl(), HOOKY_WS_MAX_BUFFER: String(maxBuffer) });
  try {
    const { id } = await createWebhook(r.url);
    const wsUrl = `${r.url.replace('http', 'ws')}/ws`;
    const readers = await Promise.all([1, 2, 3].map(() => joined(wsUrl, id)));
    const slow = await openRawWebSocket(r.port);
    await slow.next('connected');
    slow.sendFrame(JSON.stringify({ event: 'join', data: { webhookId: id } }));
    await slow.next('joined');
    // From here on it reads nothing: the kernel's buffers fill, then hooky's.
    slow.socket.pause();
    assert.is(await metric(r.url, 'hooky_websocket_connections'), 4);

    const body = JSON.stringify({ pad: 'x'.repeat(10 * KiB) });
    const captures = 1000; // ~10 MB of payload into the room
    const rssBefore = rssMiB(r.child.pid!);
    const peak = rssPeak(r.child.pid!);
    let closedAfter: number | undefined;
    let polling = false;
    const acked = await captureMany(r.url, id, captures, body, 10, (n) => {
      // Note how far the flow had got when the slow consumer was dropped.
      if (closedAfter !== undefined || polling || n % 20 !== 0) return;
      polling = true;
      metric(r.url, 'hooky_websocket_connections').then((c) => {
        polling = false;
        if (c === 3 && closedAfter === undefined) closedAfter = n;
      });
    });
    const rssPeakMiB = peak.stop();

    await eventually(async () => (await metric(r.url, 'hooky_websocket_backpressure_closes_total')) === 1, 5000, 'one backpressure close');
    assert.is(await metric(r.url, 'hooky_websocket_connections'), 3);
    assert.ok(closedAfter !== undefined && closedAfter < captures, `closed mid-flow, after ${closedAfter} captures`);

    // Everyone else got every capture, exactly once.
    for (const c of readers) {
      await eventually(() => c.frames.filter((f) => f.event === 'new-request').length >= captures, 10_000, 'all events delivered');
      const got = c.frames.filter((f) => f.event === 'new-request').map((f) => f.data.id as string);
      assert.is(got.length, captures);
      assert.equal(new Set(got), new Set(acked));
    }

    // What the slow consumer can still read is what the kernel held, then the connection ends.
    slow.socket.resume();
    await slow.ended;
    const flowBytes = captures * body.length;
    assert.ok(slow.received() < flowBytes * 0.75, `slow consumer got ${slow.received()} of ${flowBytes} bytes`);
    const notice = slow.frames.filter((f) => f.event === 'new-request').length;
    assert.ok(notice < captures, `it saw ${notice} events`);

    // Without the limit, hooky would hold the undelivered rest (several MB) for this client.
    const rssAfter = rssMiB(r.child.pid!);
    assert.ok(rssPeakMiB - rssBefore < 64, `RSS ${rssBefore.toFixed(1)} → peak ${rssPeakMiB.toFixed(1)} MiB`);
    figures('slow consumer', {
      maxBufferBytes: maxBuffer,
      flowBytes,
      closedAfterCaptures: closedAfter,
      slowReceivedBytes: slow.received(),
      slowReceivedEvents: notice,
      rssMiB: { before: +rssBefore.toFixed(1), peak: +rssPeakMiB.toFixed(1), after: +rssAfter.toFixed(1) },
    });
    // A reader that kept up and then vanishes (1006 too) is not counted as a backpressure close.
    readers[0]!.ws.terminate();
    await eventually(async () => (await metric(r.url, 'hooky_websocket_connections')) === 2, 5000, 'reader gone');
    assert.is(await metric(r.url, 'hooky_websocket_backpressure_closes_total'), 1);
    await Promise.all(readers.slice(1).map((c) => c.close()));
  } finally {
    r.child.kill('SIGTERM');
    await r.exited;
  }
});

test.run();
