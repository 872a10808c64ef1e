/**
 * bus: two hooky processes on one database, for each bus (LISTEN/NOTIFY, then NATS).
 *
 * 1. Latency: a paced sender captures 200 requests/s for 10 s on A, each body carrying its send
 *    time; one subscriber on A (the single-process fan-out of the same run) and one on B.
 *    Latency = receipt − send time, CLOCK_MONOTONIC of this one process.
 * 2. NATS outage: 500 captures/s for 12 s on A; nats-server is killed (SIGKILL) 3 s in and
 *    started again 5 s later. Heal = from the restarted server being ready to B's subscriber
 *    having every request sent before the restart; and to B being back on NATS (`resumed`).
 *    Meanwhile B delivers through its periodic check, so most of the gap is closed before.
 *
 *   DATABASE_URL=postgres://… node --import tsx bench/bus.ts
 *
 * Needs nats-server (Debian: apt-get install nats-server). Prints a table; writes nothing.
 */
import WebSocket from 'ws';
import { findNatsServer, startNats, type TestNats } from '../test/support/nats.js';
import { createWebhooks, scrape, sleep } from './support/http.js';
import { nowUs, paced } from './support/pacer.js';
import { startHooky, type Target } from './support/proc.js';
import { percentiles } from './support/stats.js';

const databaseUrl = process.env.DATABASE_URL;
const binary = findNatsServer();
if (databaseUrl === undefined || binary === undefined) {
  process.stderr.write('bench/bus.ts needs DATABASE_URL and nats-server\n');
  process.exit(2);
}

interface Subscriber {
  /** seq → latency, µs; one entry per frame (a duplicate adds a second). */
  got: Map<number, number>;
  duplicates: number;
  close(): void;
}

/** One hooky.v1 client joined to `webhookId`; resolves once `joined` arrives. */
function subscribe(wsUrl: string, webhookId: string): Promise<Subscriber> {
  const ws = new WebSocket(wsUrl, 'hooky.v1');
  const sub: Subscriber = { got: new Map(), duplicates: 0, close: () => ws.close() };
  return new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ event: 'join', data: { webhookId } })));
    ws.on('message', (raw) => {
      const t = nowUs();
      const frame = JSON.parse(raw.toString()) as { event: string; data: { body?: string } };
      if (frame.event === 'joined') resolve(sub);
      if (frame.event !== 'new-request') return;
      const { seq, t: sent } = JSON.parse(frame.data.body!) as { seq: number; t: number };
      if (sub.got.has(seq)) sub.duplicates++;
      else sub.got.set(seq, t - sent);
    });
  });
}

const ms = (us: number) => (us / 1000).toFixed(2);
const stats = (sub: Subscriber, upTo: number) => {
  const xs = Float64Array.from(sub.got.values());
  const [p50, p99, max] = percentiles(xs, [50, 99, 100]);
  let missed = 0;
  for (let i = 0; i < upTo; i++) if (!sub.got.has(i)) missed++;
  return { p50: ms(p50!), p99: ms(p99!), max: ms(max!), missed, duplicates: sub.duplicates };
};
const counter = (name: string) => async (t: Target) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await scrape(t.url))?.[1] ?? NaN);
const filled = counter('hooky_relay_filled_total');
const resumes = counter('hooky_bus_resumes_total');

async function pair(env: Record<string, string>): Promise<[Target, Target]> {
  const a = await startHooky({ databaseUrl: databaseUrl!, env });
  const b = await startHooky({ databaseUrl: databaseUrl!, env });
  return [a, b];
}

async function latency(label: string, env: Record<string, string>) {
  const [a, b] = await pair(env);
  try {
    const id = `bench-bus-${label}-${Date.now().toString(36)}`;
    await createWebhooks(a.url, [id]);
    const onA = await subscribe(a.wsUrl, id);
    const onB = await subscribe(b.wsUrl, id);
    await sleep(1500); // NOTIFY: A hears B's heartbeat, so it notifies its batches
    const before = await filled(b);
    const rate = 200;
    const seconds = 10;
    const sent = await paced(() => `${a.url}/h/${id}`, rate, seconds, (seq, t) => JSON.stringify({ seq, t }));
    await sleep(2000);
    onA.close();
    onB.close();
    const row = { bus: label, sent: sent.sent, ok: sent.ok, 'A→A': stats(onA, sent.sent), 'A→B': stats(onB, sent.sent), 'B read from Postgres': (await filled(b)) - before };
    process.stdout.write(`${JSON.stringify(row)}\n`);
  } finally {
    await a.stop();
    await b.stop();
  }
}

async function outage(nats: TestNats, env: Record<string, string>) {
  const [a, b] = await pair(env);
  try {
    const id = `bench-bus-outage-${Date.now().toString(36)}`;
    await createWebhooks(a.url, [id]);
    const onB = await subscribe(b.wsUrl, id);
    await sleep(500);
    const before = await filled(b);
    const resumesBefore = await resumes(b);
    let lastSeq = -1;
    let killedSeq = 0;
    let cut = 0;
    let readyAt = 0;
    let healedAt = 0;
    const rate = 500;
    const sending = paced(() => `${a.url}/h/${id}`, rate, 12, (seq, t) => JSON.stringify({ seq: (lastSeq = seq), t }));
    await sleep(3000);
    await nats.kill();
    killedSeq = lastSeq;
    await sleep(5000);
    await nats.start();
    readyAt = performance.now();
    cut = lastSeq;
    for (;;) {
      let all = true;
      for (let i = 0; i <= cut && all; i++) all = onB.got.has(i);
      if (all) break;
      await sleep(5);
    }
    healedAt = performance.now();
    while ((await resumes(b)) === resumesBefore) await sleep(5);
    const resumedAt = performance.now();
    const sent = await sending;
    await sleep(2000);
    onB.close();
    const during = Float64Array.from([...onB.got].filter(([seq]) => seq > killedSeq && seq <= cut).map(([, us]) => us));
    const [p50, p99, max] = percentiles(during, [50, 99, 100]);
    const row = {
      outage: 'nats-server SIGKILL, 5 s, 500 captures/s',
      sent: sent.sent,
      ok: sent.ok,
      'sent during the outage': cut - killedSeq,
      'their latency on B p50/p99/max ms': `${ms(p50!)}/${ms(p99!)}/${ms(max!)}`,
      'heal: server ready → B has every earlier request, ms': (healedAt - readyAt).toFixed(0),
      'server ready → B back on NATS (resumed), ms': (resumedAt - readyAt).toFixed(0),
      'A→B overall': stats(onB, sent.sent),
      'B read from Postgres': (await filled(b)) - before,
    };
    process.stdout.write(`${JSON.stringify(row)}\n`);
  } finally {
    await a.stop();
    await b.stop();
  }
}

const nats = await startNats(binary);
try {
  await latency('notify', {});
  await latency('nats', { HOOKY_NATS_URL: nats.url });
  await outage(nats, { HOOKY_NATS_URL: nats.url });
} finally {
  await nats.close();
}
