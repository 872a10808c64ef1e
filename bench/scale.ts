/**
 * scale: several hooky processes on one database, in one run, each figure beside the single
 * process of the same run. Deployments, one after the other (only one runs at a time):
 *
 * - single: one process (HOOKY_WORKERS=1), the reference;
 * - 2 workers: HOOKY_WORKERS=2 (one port; the primary forks two workers). On a branch without
 *   src/cluster.ts, the two processes the primary would fork: hooky twice on one port with
 *   HOOKY_SHARE_PORT=1 (the result says which);
 * - notify: instances A and B on their own ports, LISTEN/NOTIFY bus (the default);
 * - nats: A and B with HOOKY_NATS_URL, a nats-server of this run's own on free ports.
 *
 * For each: capture req/s (autocannon, 100 connections, 1 KB body, 2 s warm-up then 5 s; split
 * 50 + 50 over A and B for the pairs) with the CPU of node and of Postgres per capture; then
 * fan-out: 100 subscribers in one room (half on A, half on B for the pairs), a paced sender
 * capturing 500/s for 5 s on A, each body carrying its send time; A→A and A→B latency apart.
 * Then, for notify, what NOTIFY per batch costs: 100 connections on A alone while B is there
 * (heard, so A notifies every batch), then B stopped and, once A no longer hears it, the same
 * load again. Last, for nats, an outage: 500 captures/s for 10 s on A with a subscriber on B;
 * nats-server is killed (SIGKILL) 2 s in and started again 5 s later; heal = from the restart to
 * B's subscriber having every request sent before it.
 */
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { findNatsServer, startNats, type TestNats } from '../test/support/nats.js';
import { runCannon, type CannonResult } from './support/cannon.js';
import { createWebhooks, jsonBody, scrape, sleep } from './support/http.js';
import { nowUs, paced, type PacedResult } from './support/pacer.js';
import { cpuOfCluster, machineCpu, root, startHooky, type Target } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type Row, type ScenarioResult } from './support/report.js';
import { percentiles } from './support/stats.js';
import { startSubscribers, type Subscribers } from './support/subscribers.js';

const connections = 100;
const warmup = 2;
const captureSeconds = 5;
const captureBody = jsonBody(1024, { event: 'invoice.paid', amount: 4200 });
const subscribers = 100;
const fanRate = 500;
const fanSeconds = 5;
const fanBody = 256;
const outageRate = 500;
// The bus's heartbeat is 1 s and an instance not heard for 3.5 s is gone (src/bus.ts).
const heardAfterMs = 1500;
const aloneAfterMs = 4500;

/** The figures of one autocannon pass over one or more instances, and the CPU meanwhile. */
interface Capture {
  rps: number;
  requests: number;
  twoxx: number;
  failed: number;
  p99: number;
  /** CPU seconds: every hooky process (workers included), the cluster, autocannon, the rest. */
  cpu: { node: number; postgres: number; cannon: number; other: number; wall: number };
  /** Group-commit batches, when every instance could be scraped apart (distinct ports). */
  batches: number | undefined;
}

interface Fan {
  send: PacedResult;
  /** Per subscriber group (A→A, A→B, or "any" when the kernel chose the process). */
  groups: Record<string, { p50: number; p99: number; max: number; deliveries: number; expected: number; missed: number; duplicates: number }>;
  all: { p50: number; p99: number };
}

interface Deployment {
  label: string;
  /** The processes started (for workers: the primary, whose CPU counts its workers). */
  procs: Target[];
  /** Where load goes: one base per instance with a port of its own. */
  bases: Target[];
  /** Subscriber groups: name → the instance they connect to. */
  groups: [string, Target][];
  /** The instances can be scraped apart, so batch counts are exact. */
  distinct: boolean;
  note: string;
}

const pgCpu = (ctx: BenchContext) => (ctx.postmasterPid ? cpuOfCluster(ctx.postmasterPid) : NaN);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const counter = (name: string) => async (t: Target) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await scrape(t.url))?.[1] ?? NaN);
const batchesOf = counter('hooky_batch_rows_count');
const filledOf = counter('hooky_relay_filled_total');

async function capture(ctx: BenchContext, label: string, procs: Target[], bases: Target[], hook: string, seconds: number, distinct: boolean): Promise<Capture> {
  const b0 = distinct ? sum(await Promise.all(bases.map(batchesOf))) : NaN;
  const c0 = { node: sum(procs.map((p) => p.cpu())), postgres: pgCpu(ctx), machine: machineCpu(), wall: performance.now() };
  const share = Math.floor(connections / bases.length);
  const runs: CannonResult[] = await Promise.all(
    bases.map((t, i) =>
      runCannon({ url: t.url, paths: [`/h/${hook}`], body: captureBody, connections: share, duration: seconds }, i === 0 ? (s, n) => progress(`  ${label}  ${s}/${seconds} s  ${fmt.int(n * bases.length)} req/s`) : undefined),
    ),
  );
  const node = sum(procs.map((p) => p.cpu())) - c0.node;
  const postgres = pgCpu(ctx) - c0.postgres;
  const machine = machineCpu() - c0.machine;
  const cannon = sum(runs.map((r) => r.cpu));
  const batches = distinct ? sum(await Promise.all(bases.map(batchesOf))) - b0 : undefined;
  return {
    rps: sum(runs.map((r) => r.rps)),
    requests: sum(runs.map((r) => r.requests)),
    twoxx: sum(runs.map((r) => r.twoxx)),
    failed: sum(runs.map((r) => r.non2xx + r.errors + r.timeouts)),
    p99: Math.max(...runs.map((r) => r.latency.p99)),
    cpu: { node, postgres, cannon, other: machine - node - (postgres || 0) - cannon, wall: (performance.now() - c0.wall) / 1000 },
    batches,
  };
}

async function fanout(d: Deployment, hot: string): Promise<Fan> {
  const per = Math.floor(subscribers / d.groups.length);
  const subs: [string, Subscribers][] = [];
  try {
    for (const [name, target] of d.groups) {
      const s = await startSubscribers({ webhookIds: Array.from({ length: per }, () => hot), processes: 1, maxSeq: fanRate * fanSeconds });
      subs.push([name, s]);
      progress(`  ${d.label}: opening ${per} subscribers (${name})`);
      const opened = await s.open(target.wsUrl);
      if (opened.failed > 0) throw new Error(`${d.label}: ${opened.failed} subscribers failed to join: ${opened.errors.join('; ')}`);
    }
    await sleep(heardAfterMs); // the instances hear each other before the first capture
    for (const [, s] of subs) s.reset();
    const send = await paced(
      () => `${d.bases[0]!.url}/h/${hot}`,
      fanRate,
      fanSeconds,
      (seq, t) => jsonBody(fanBody, { seq, t }),
      (k, total) => progress(`  ${d.label}: fan-out ${k}/${total} captures sent`),
    );
    await sleep(1500);
    const groups: Fan['groups'] = {};
    const everything: Float64Array[] = [];
    for (const [name, s] of subs) {
      const rep = await s.report();
      everything.push(rep.latencies);
      const [p50, p99, max] = percentiles(rep.latencies.slice(), [50, 99, 100]);
      groups[name] = {
        p50: p50!,
        p99: p99!,
        max: max!,
        deliveries: rep.latencies.length,
        expected: send.ok * rep.subs.length,
        missed: sum(rep.subs.map((x) => Math.max(0, send.ok - x.unique))),
        duplicates: sum(rep.subs.map((x) => x.duplicates)),
      };
    }
    const merged = new Float64Array(sum(everything.map((x) => x.length)));
    let at = 0;
    for (const x of everything) merged.set(x, (at += x.length) - x.length);
    const [p50, p99] = percentiles(merged, [50, 99]);
    send.answerMs = [];
    return { send, groups, all: { p50: p50!, p99: p99! } };
  } finally {
    await Promise.all(subs.map(([, s]) => s.close()));
  }
}

/** One hooky.v1 client on `wsUrl` joined to `webhookId`: seq → latency (µs) of every frame. */
function subscribe(wsUrl: string, webhookId: string): Promise<{ got: Map<number, number>; duplicates: number; close(): void }> {
  const ws = new WebSocket(wsUrl, 'hooky.v1');
  const sub = { got: new Map<number, number>(), duplicates: 0, close: () => ws.close() };
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

/** 500 captures/s on A, nats-server SIGKILLed 2 s in and started again 5 s later (see top). */
async function outage(nats: TestNats, a: Target, b: Target, id: string) {
  const onB = await subscribe(b.wsUrl, id);
  try {
    await sleep(500);
    const filled0 = await filledOf(b);
    let lastSeq = -1;
    const sending = paced(() => `${a.url}/h/${id}`, outageRate, 10, (seq, t) => JSON.stringify({ seq: (lastSeq = seq), t }));
    await sleep(2000);
    progress('  nats: outage, nats-server killed');
    await nats.kill();
    const killedSeq = lastSeq;
    await sleep(5000);
    await nats.start();
    const readyAt = performance.now();
    const cut = lastSeq;
    const has = () => {
      for (let i = 0; i <= cut; i++) if (!onB.got.has(i)) return false;
      return true;
    };
    while (!has() && performance.now() - readyAt < 30_000) await sleep(5);
    const healMs = performance.now() - readyAt;
    const sent = await sending;
    await sleep(1500);
    let missed = 0;
    for (let i = 0; i < sent.sent; i++) if (!onB.got.has(i)) missed++;
    return { sent: sent.sent, ok: sent.ok, duringOutage: cut - killedSeq, healMs, missed, duplicates: onB.duplicates, filled: (await filledOf(b)) - filled0 };
  } finally {
    onB.close();
  }
}

async function pair(ctx: BenchContext, label: string, env: Record<string, string>): Promise<Deployment> {
  const a = await startHooky({ databaseUrl: ctx.databaseUrl, env });
  const b = await startHooky({ databaseUrl: ctx.databaseUrl, env });
  return { label, procs: [a, b], bases: [a, b], groups: [['A→A', a], ['A→B', b]], distinct: true, note: `${label}: A and B on ports ${a.port}, ${b.port}` };
}

async function workers(ctx: BenchContext): Promise<Deployment> {
  if (existsSync(join(root, 'src/cluster.ts'))) {
    const p = await startHooky({ databaseUrl: ctx.databaseUrl, env: { HOOKY_WORKERS: '2' } });
    return { label: '2 workers', procs: [p], bases: [p], groups: [['any', p]], distinct: false, note: 'HOOKY_WORKERS=2' };
  }
  const a = await startHooky({ databaseUrl: ctx.databaseUrl, env: { HOOKY_SHARE_PORT: '1' } });
  const b = await startHooky({ databaseUrl: ctx.databaseUrl, env: { HOOKY_SHARE_PORT: '1', PORT: String(a.port) } });
  return { label: '2 workers', procs: [a, b], bases: [a], groups: [['any', a]], distinct: false, note: 'no src/cluster.ts on this branch: two processes on one port (HOOKY_SHARE_PORT=1), what HOOKY_WORKERS=2 forks' };
}

interface Measured {
  label: string;
  note: string;
  capture: Capture;
  fan: Fan;
}

/** Starts a deployment, measures capture then fan-out, and stops it (unless `keep`). */
async function measureDeployment(ctx: BenchContext, start: () => Promise<Deployment>, tag: string, keep?: (d: Deployment, m: Measured) => Promise<void>): Promise<Measured> {
  const d = await start();
  try {
    const hook = `${tag}-cap`;
    const hot = `${tag}-hot`;
    await createWebhooks(d.bases[0]!.url, [hook, hot]);
    await sleep(heardAfterMs);
    await capture(ctx, `${d.label} warm-up`, d.procs, d.bases, hook, warmup, d.distinct);
    const cap = await capture(ctx, d.label, d.procs, d.bases, hook, captureSeconds, d.distinct);
    const fan = await fanout(d, hot);
    const m = { label: d.label, note: d.note, capture: cap, fan };
    await keep?.(d, m);
    return m;
  } finally {
    await Promise.all(d.procs.map((p) => p.stop()));
  }
}

const perCapture = (c: Capture) => ({ node: (c.cpu.node * 1e6) / c.twoxx, postgres: (c.cpu.postgres * 1e6) / c.twoxx });
const usText = (c: Capture) => {
  const x = perCapture(c);
  return `${(x.node + x.postgres).toFixed(1)} (${x.node.toFixed(1)} + ${x.postgres.toFixed(1)})`;
};
const cores = (c: Capture) => `node ${(c.cpu.node / c.cpu.wall).toFixed(2)}, pg ${(c.cpu.postgres / c.cpu.wall).toFixed(2)}, load gen ${(c.cpu.cannon / c.cpu.wall).toFixed(2)}, rest ${(c.cpu.other / c.cpu.wall).toFixed(2)}`;

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const binary = findNatsServer();
  if (binary === undefined) throw new Error('scale needs nats-server (Debian: apt-get install nats-server)');
  const tag = `scale-${Date.now().toString(36)}`;
  const load0 = loadavg();

  const single = await measureDeployment(ctx, async () => {
    const p = await startHooky({ databaseUrl: ctx.databaseUrl });
    return { label: 'single', procs: [p], bases: [p], groups: [['A→A', p]], distinct: true, note: 'one process' };
  }, `${tag}-single`);
  const two = await measureDeployment(ctx, () => workers(ctx), `${tag}-workers`);

  let cost: { present: Capture; alone: Capture; bCpu: number } | undefined;
  const notify = await measureDeployment(ctx, () => pair(ctx, 'notify', {}), `${tag}-notify`, async (d) => {
    const [a, b] = d.bases as [Target, Target];
    const hook = `${tag}-notify-cap`;
    const b0 = b.cpu();
    const present = await capture(ctx, 'notify: A, B present', [a], [a], hook, captureSeconds, true);
    const bCpu = b.cpu() - b0;
    await b.stop();
    progress('  notify: B stopped, waiting until A is alone');
    await sleep(aloneAfterMs);
    const alone = await capture(ctx, 'notify: A alone', [a], [a], hook, captureSeconds, true);
    cost = { present, alone, bCpu };
  });

  const nats = await startNats(binary);
  let out: Awaited<ReturnType<typeof outage>> | undefined;
  let natsMeasured: Measured;
  try {
    natsMeasured = await measureDeployment(ctx, () => pair(ctx, 'nats', { HOOKY_NATS_URL: nats.url }), `${tag}-nats`, async (d) => {
      const id = `${tag}-nats-outage`;
      await createWebhooks(d.bases[0]!.url, [id]);
      out = await outage(nats, d.bases[0]!, d.bases[1]!, id);
    });
  } finally {
    await nats.close();
  }
  progressDone();
  const load1 = loadavg();

  const all = [single, two, notify, natsMeasured];
  const ref = single.capture;
  const refFan = single.fan.groups['A→A']!.p99;
  const rows: Row[] = [];
  for (const m of all) {
    const c = m.capture;
    rows.push({
      metric: `capture req/s: ${m.label}`,
      hooky: `${fmt.int(c.rps)} (${fmt.ratio(c.rps / ref.rps)}; ${c.failed} failed)`,
      reference: fmt.int(ref.rps),
      target: '',
      met: c.failed === 0 ? null : false,
    });
  }
  for (const m of all) rows.push({ metric: `CPU µs per durable capture, node + postgres: ${m.label}`, hooky: usText(m.capture), reference: usText(ref), target: '≤ 40 µs (goal)', met: null });
  for (const m of all) rows.push({ metric: `cores busy while capturing: ${m.label}`, hooky: cores(m.capture), reference: cores(ref), target: `of ${cpus().length}`, met: null });
  for (const m of all) {
    rows.push({
      metric: `fan-out delivery p50 / p99, ${subscribers} subscribers, ${fanRate}/s: ${m.label}`,
      hooky: `${fmt.ms(m.fan.all.p50)} / ${fmt.ms(m.fan.all.p99)}`,
      reference: `${fmt.ms(single.fan.all.p50)} / ${fmt.ms(refFan)}`,
      target: '',
      met: null,
    });
  }
  for (const m of [two, notify, natsMeasured]) {
    for (const [name, g] of Object.entries(m.fan.groups)) {
      const cross = name === 'A→B';
      rows.push({
        metric: `delivery ${name} p50 / p99 (missed, duplicates): ${m.label}`,
        hooky: `${fmt.ms(g.p50)} / ${fmt.ms(g.p99)} (${g.missed}, ${g.duplicates})`,
        reference: `single A→A ${fmt.ms(single.fan.all.p50)} / ${fmt.ms(refFan)}`,
        target: cross || name === 'any' ? `p99 ≤ 2 × reference (${fmt.ratio(g.p99 / refFan)}), 0 missed, 0 duplicated` : '0 missed, 0 duplicated',
        met: (cross || name === 'any' ? g.p99 <= 2 * refFan : true) && g.missed === 0 && g.duplicates === 0,
      });
    }
  }
  if (cost) {
    const { present, alone, bCpu } = cost;
    const perBatch = (c: Capture) => (c.batches ? ((c.cpu.node + c.cpu.postgres) * 1e6) / c.batches : NaN);
    const rowsPerBatch = (c: Capture) => (c.batches ? c.twoxx / c.batches : NaN);
    rows.push({
      metric: 'NOTIFY per batch: capture req/s on A, B present (A notifies) vs A alone',
      hooky: `${fmt.int(present.rps)} (${fmt.ratio(present.rps / alone.rps)})`,
      reference: fmt.int(alone.rps),
      target: '',
      met: null,
    });
    rows.push({
      metric: 'NOTIFY per batch: postgres CPU, cores (B present vs alone)',
      hooky: (present.cpu.postgres / present.cpu.wall).toFixed(2),
      reference: (alone.cpu.postgres / alone.cpu.wall).toFixed(2),
      target: '',
      met: null,
    });
    rows.push({
      metric: 'NOTIFY per batch: batches, rows per batch, node + postgres µs per batch (B present vs alone)',
      hooky: `${fmt.int(present.batches ?? NaN)}, ${rowsPerBatch(present).toFixed(1)}, ${perBatch(present).toFixed(0)}`,
      reference: `${fmt.int(alone.batches ?? NaN)}, ${rowsPerBatch(alone).toFixed(1)}, ${perBatch(alone).toFixed(0)}`,
      target: '',
      met: null,
    });
    rows.push({ metric: 'NOTIFY per batch: idle B hearing them, CPU cores', hooky: (bCpu / present.cpu.wall).toFixed(2), reference: '—', target: '', met: null });
  }
  if (out) {
    rows.push({
      metric: `nats outage 5 s at ${outageRate}/s: restart → B has every earlier request`,
      hooky: `${fmt.int(out.healMs)} ms (${out.duringOutage} sent meanwhile, ${out.filled} read from Postgres; ${out.missed} missed, ${out.duplicates} duplicated)`,
      reference: '—',
      target: '≤ 2,000 ms, 0 missed',
      met: out.healMs <= 2000 && out.missed === 0,
    });
  }
  rows.push({
    metric: 'machine load average (1 min), start → end',
    hooky: `${load0[0]!.toFixed(1)} → ${load1[0]!.toFixed(1)} on ${cpus().length} cores`,
    reference: '',
    target: 'other work shares the machine',
    met: null,
  });

  return result('scale', started, rows, {
    connections,
    warmup,
    captureSeconds,
    body: captureBody.length,
    subscribers,
    fanRate,
    fanSeconds,
    fanBody,
    loadavg: { start: load0, end: load1 },
    deployments: all.map((m) => ({ ...m, cpuPerCapture: perCapture(m.capture) })),
    notifyCost: cost,
    natsOutage: out,
  });
}
