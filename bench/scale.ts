/**
 * scale: several hooky processes on one PostgreSQL, in one run, each figure beside the single
 * process of the same run. Four deployments run at once, each on a database of its own in the
 * one cluster (LISTEN/NOTIFY is per database, so they do not hear each other; created for the
 * run and dropped after it, so with DATABASE_URL its user needs CREATEDB):
 *
 * - single: one process (HOOKY_WORKERS=1), the reference;
 * - 2 workers: HOOKY_WORKERS=2 (one port; the primary forks two workers). On a branch without
 *   src/cluster.ts, the two processes the primary would fork: hooky twice on one port with
 *   HOOKY_SHARE_PORT=1 (the result says which);
 * - notify: instances A and B on their own ports, LISTEN/NOTIFY bus (the default);
 * - nats: A and B with HOOKY_NATS_URL, a nats-server of this run's own on free ports.
 *
 * The load goes to one deployment at a time, in slices ordered single, workers, notify,
 * notify A alone, nats, then the same backwards, so that whatever else the machine does, and
 * any drift over the run, falls on every deployment alike:
 * - capture: autocannon, 100 connections, 1 KB body, 3 s per slice after a 2 s warm-up each;
 *   the pairs get 50 + 50 over A and B; "notify, A only" puts all 100 on A while B is there
 *   (heard, so A sends a NOTIFY per batch): beside single, a lone instance, that is the NOTIFY's
 *   cost. CPU of node (every process of the deployment) and of the cluster, per capture.
 * - fan-out: 100 subscribers in one room per deployment (half on A, half on B for the pairs),
 *   a paced sender capturing 500/s on A for 2.5 s per slice, each body carrying its send time;
 *   A→A and A→B latency apart.
 * A CHECKPOINT runs before every slice (outside its time). Then NOTIFY alone: 4 connections sending NOTIFYs of a batch's size, each its own transaction
 * as the bus sends them, for 3 s. Last, for nats, an outage: 500 captures/s for 10 s on A with a
 * subscriber on B; nats-server is killed (SIGKILL) 2 s in and started again 5 s later; heal =
 * from the restart to B's subscriber having every request sent before it.
 */
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import WebSocket from 'ws';
import { findNatsServer, startNats, type TestNats } from '../test/support/nats.js';
import { runCannon, type CannonResult } from './support/cannon.js';
import { createWebhooks, jsonBody, scrape, sleep } from './support/http.js';
import { nowUs, paced } from './support/pacer.js';
import { cpuOfCluster, machineCpu, root, startHooky, type Target } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type Row, type ScenarioResult } from './support/report.js';
import { percentiles } from './support/stats.js';
import { startSubscribers, type Subscribers } from './support/subscribers.js';

const connections = 100;
const warmup = 2;
const captureSlice = 3;
const captureBody = jsonBody(1024, { event: 'invoice.paid', amount: 4200 });
const subscribers = 100;
const fanRate = 500;
const fanSeconds = 2.5;
const fanBody = 256;
const outageRate = 500;
// The bus's heartbeat is 1 s: instances hear each other well within this.
const heardAfterMs = 2500;

/** The figures of autocannon passes over one deployment, and the CPU meanwhile, summed. */
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
  seconds: number;
}

interface Group {
  p50: number;
  p99: number;
  max: number;
  deliveries: number;
  expected: number;
  missed: number;
  duplicates: number;
}

interface Fan {
  sent: number;
  ok: number;
  /** Per subscriber group (A→A, A→B, or "any" when the kernel chose the process). */
  groups: Record<string, Group>;
  all: { p50: number; p99: number };
  /** CPU seconds while sending: every hooky process, the cluster (A's inserts, B's reads). */
  cpu: { node: number; postgres: number; wall: number };
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
  hook: string;
  hot: string;
  subs: [string, Subscribers][];
  capture: Capture;
  fan: { sent: number; ok: number; cpu: Fan['cpu'] };
}

const pgCpu = (ctx: BenchContext) => (ctx.postmasterPid ? cpuOfCluster(ctx.postmasterPid) : NaN);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const counter = (name: string) => async (t: Target) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await scrape(t.url))?.[1] ?? NaN);
const batchesOf = counter('hooky_batch_rows_count');
const filledOf = counter('hooky_relay_filled_total');
const emptyCapture = (): Capture => ({ rps: 0, requests: 0, twoxx: 0, failed: 0, p99: 0, cpu: { node: 0, postgres: 0, cannon: 0, other: 0, wall: 0 }, batches: 0, seconds: 0 });

/** One autocannon slice on `bases` (the connections split between them), added to `into`. */
async function capture(ctx: BenchContext, label: string, d: Deployment, bases: Target[], seconds: number, into?: Capture): Promise<void> {
  const b0 = d.distinct ? sum(await Promise.all(bases.map(batchesOf))) : NaN;
  const c0 = { node: sum(d.procs.map((p) => p.cpu())), postgres: pgCpu(ctx), machine: machineCpu(), wall: performance.now() };
  const share = Math.floor(connections / bases.length); // the pairs: 50 on A, 50 on B
  const runs: CannonResult[] = await Promise.all(
    bases.map((t, i) =>
      runCannon({ url: t.url, paths: [`/h/${d.hook}`], body: captureBody, connections: share, duration: seconds }, i === 0 ? (s, n) => progress(`  ${label}  ${s}/${seconds} s  ${fmt.int(n * bases.length)} req/s`) : undefined),
    ),
  );
  const node = sum(d.procs.map((p) => p.cpu())) - c0.node;
  const postgres = pgCpu(ctx) - c0.postgres;
  const machine = machineCpu() - c0.machine;
  const cannon = sum(runs.map((r) => r.cpu));
  const wall = (performance.now() - c0.wall) / 1000;
  if (!into) return;
  into.requests += sum(runs.map((r) => r.requests));
  into.twoxx += sum(runs.map((r) => r.twoxx));
  into.failed += sum(runs.map((r) => r.non2xx + r.errors + r.timeouts));
  into.p99 = Math.max(into.p99, ...runs.map((r) => r.latency.p99));
  into.seconds += seconds;
  into.rps = into.requests / into.seconds;
  into.cpu.node += node;
  into.cpu.postgres += postgres;
  into.cpu.cannon += cannon;
  into.cpu.other += machine - node - (postgres || 0) - cannon;
  into.cpu.wall += wall;
  into.batches = d.distinct ? into.batches! + sum(await Promise.all(bases.map(batchesOf))) - b0 : undefined;
}

async function openSubscribers(d: Deployment, maxSeq: number): Promise<void> {
  const per = Math.floor(subscribers / d.groups.length);
  for (const [name, target] of d.groups) {
    const s = await startSubscribers({ webhookIds: Array.from({ length: per }, () => d.hot), processes: 1, maxSeq });
    d.subs.push([name, s]);
    progress(`  ${d.label}: opening ${per} subscribers (${name})`);
    const opened = await s.open(target.wsUrl);
    if (opened.failed > 0) throw new Error(`${d.label}: ${opened.failed} subscribers failed to join: ${opened.errors.join('; ')}`);
  }
}

/** One paced slice of captures into the deployment's hot room, on its first instance. */
async function fanSlice(ctx: BenchContext, d: Deployment, firstSeq: number, label: string, seconds = fanSeconds): Promise<void> {
  const c0 = { node: sum(d.procs.map((p) => p.cpu())), postgres: pgCpu(ctx), wall: performance.now() };
  const send = await paced(
    () => `${d.bases[0]!.url}/h/${d.hot}`,
    fanRate,
    seconds,
    (seq, t) => jsonBody(fanBody, { seq, t }),
    (k, total) => progress(`  ${label}: ${d.label} ${k}/${total} captures sent`),
    firstSeq,
  );
  await sleep(300); // the last deliveries (and B's reads) land in this slice's CPU
  d.fan.sent += send.sent;
  d.fan.ok += send.ok;
  d.fan.cpu.node += sum(d.procs.map((p) => p.cpu())) - c0.node;
  d.fan.cpu.postgres += pgCpu(ctx) - c0.postgres;
  d.fan.cpu.wall += (performance.now() - c0.wall) / 1000;
}

async function fanReport(d: Deployment): Promise<Fan> {
  const groups: Fan['groups'] = {};
  const everything: Float64Array[] = [];
  for (const [name, s] of d.subs) {
    const rep = await s.report();
    everything.push(rep.latencies);
    const [p50, p99, max] = percentiles(rep.latencies.slice(), [50, 99, 100]);
    groups[name] = {
      p50: p50!,
      p99: p99!,
      max: max!,
      deliveries: rep.latencies.length,
      expected: d.fan.ok * rep.subs.length,
      missed: sum(rep.subs.map((x) => Math.max(0, d.fan.ok - x.unique))),
      duplicates: sum(rep.subs.map((x) => x.duplicates)),
    };
  }
  const merged = new Float64Array(sum(everything.map((x) => x.length)));
  let at = 0;
  for (const x of everything) merged.set(x, (at += x.length) - x.length);
  const [p50, p99] = percentiles(merged, [50, 99]);
  return { sent: d.fan.sent, ok: d.fan.ok, groups, all: { p50: p50!, p99: p99! }, cpu: d.fan.cpu };
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

/**
 * How many NOTIFYs the cluster takes, each its own transaction as the bus sends them (a message
 * of a batch's size, one listener): `senders` connections looping for `seconds`.
 */
async function notifyCeiling(ctx: BenchContext, seconds = 3, senders = 4) {
  const sql = postgres(ctx.databaseUrl, { max: senders + 1, onnotice: () => {} });
  try {
    let heard = 0;
    await sql.listen('hooky_bench_notify', () => void heard++);
    const message = `c ${'i'.repeat(16)} bench-webhook-with-a-long-id 123456`;
    const pg0 = pgCpu(ctx);
    const t0 = performance.now();
    let sent = 0;
    await Promise.all(
      Array.from({ length: senders }, async () => {
        while (performance.now() - t0 < seconds * 1000) {
          await sql`select pg_notify('hooky_bench_notify', ${message})`;
          sent++;
        }
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    const postgresCpu = pgCpu(ctx) - pg0;
    await sleep(200);
    return { senders, sent, heard, perSecond: sent / wall, postgresCoresBusy: postgresCpu / wall, postgresUsPerNotify: (postgresCpu * 1e6) / sent };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

type Started = Pick<Deployment, 'label' | 'procs' | 'bases' | 'groups' | 'distinct' | 'note'>;

/**
 * A database of its own in the cluster, so that no other deployment hears its NOTIFYs; its name
 * is this run's own (`name` holds only [a-z0-9_]), dropped at the end.
 */
async function database(ctx: BenchContext, name: string): Promise<string> {
  await ctx.sql.unsafe(`create database ${name}`);
  const url = new URL(ctx.databaseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Autovacuum off for the tables of a bench database (once hooky has migrated it): its passes
 * would land in whichever slice runs then, and the cluster's CPU is counted per slice.
 */
async function quiet(databaseUrl: string): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const tables = await sql<{ name: string }[]>`select quote_ident(tablename) as name from pg_tables where schemaname = 'public'`;
    for (const { name } of tables) await sql.unsafe(`alter table ${name} set (autovacuum_enabled = false, toast.autovacuum_enabled = false)`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function pair(databaseUrl: string, label: string, env: Record<string, string>): Promise<Started> {
  const a = await startHooky({ databaseUrl, env });
  const b = await startHooky({ databaseUrl, env });
  return { label: `${label}, A + B`, procs: [a, b], bases: [a, b], groups: [['A→A', a], ['A→B', b]], distinct: true, note: `${label}: A and B on ports ${a.port}, ${b.port}` };
}

async function workers(databaseUrl: string): Promise<Started> {
  if (existsSync(join(root, 'src/cluster.ts'))) {
    const p = await startHooky({ databaseUrl, env: { HOOKY_WORKERS: '2' } });
    return { label: '2 workers', procs: [p], bases: [p], groups: [['any', p]], distinct: false, note: 'HOOKY_WORKERS=2' };
  }
  const a = await startHooky({ databaseUrl, env: { HOOKY_SHARE_PORT: '1' } });
  const b = await startHooky({ databaseUrl, env: { HOOKY_SHARE_PORT: '1', PORT: String(a.port) } });
  return { label: '2 workers', procs: [a, b], bases: [a], groups: [['any', a]], distinct: false, note: 'no src/cluster.ts on this branch: two processes on one port (HOOKY_SHARE_PORT=1), what HOOKY_WORKERS=2 forks' };
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
  const dbPrefix = `hooky_bench_${tag.replace('-', '_')}`;
  const names = ['single', 'workers', 'notify', 'nats'];
  const load0 = loadavg();
  const nats = await startNats(binary);
  const deployments: Deployment[] = [];
  const fill = (d: Started, name: string): Deployment => {
    const full = { ...d, hook: `${tag}-${name}-cap`, hot: `${tag}-${name}-hot`, subs: [], capture: emptyCapture(), fan: { sent: 0, ok: 0, cpu: { node: 0, postgres: 0, wall: 0 } } };
    deployments.push(full);
    return full;
  };
  let out: Awaited<ReturnType<typeof outage>> | undefined;
  let ceiling: Awaited<ReturnType<typeof notifyCeiling>>;
  const sliceLog: { slice: number; deployment: string; captures: number; postgresCpu: number }[] = [];
  try {
    progress('  starting the deployments');
    const urls = new Map<string, string>();
    for (const name of names) urls.set(name, await database(ctx, `${dbPrefix}_${name}`));
    const single = fill(await (async () => {
      const p = await startHooky({ databaseUrl: urls.get('single')! });
      return { label: 'single', procs: [p], bases: [p], groups: [['A→A', p]], distinct: true, note: 'one process' } satisfies Started;
    })(), 'single');
    const two = fill(await workers(urls.get('workers')!), 'workers');
    const notify = fill(await pair(urls.get('notify')!, 'notify', {}), 'notify');
    const natsPair = fill(await pair(urls.get('nats')!, 'nats', { HOOKY_NATS_URL: nats.url }), 'nats');
    for (const url of urls.values()) await quiet(url);
    // All 100 connections on notify's A while B is there: A sends a NOTIFY per batch.
    const aOnly: Deployment = { ...notify, label: 'notify, A only (B present)', bases: [notify.bases[0]!], capture: emptyCapture() };

    const order = [single, two, notify, aOnly, natsPair];
    const slices = [...order, ...[...order].reverse()];
    const fanOrder = [single, two, notify, natsPair];
    const fanSlices = [...fanOrder, ...[...fanOrder].reverse()];
    const perSlice = Math.round(fanRate * fanSeconds);
    for (const d of fanOrder) {
      await createWebhooks(d.bases[0]!.url, [d.hook, d.hot]);
      await openSubscribers(d, perSlice * 2);
    }
    await sleep(heardAfterMs);
    for (const d of order) await capture(ctx, `${d.label} warm-up`, d, d.bases, warmup);
    for (const d of fanOrder) await fanSlice(ctx, d, 0, 'fan-out warm-up', 0.5);
    // A checkpoint before every slice: the previous slices' writes are flushed outside the
    // measured time, not in whichever slice the checkpoint would otherwise fall.
    const checkpoint = () => ctx.sql`checkpoint`.then(() => undefined, () => undefined);
    for (const [i, d] of slices.entries()) {
      await checkpoint();
      const pg0 = d.capture.cpu.postgres;
      const r0 = d.capture.twoxx;
      await capture(ctx, `capture ${i + 1}/${slices.length} ${d.label}`, d, d.bases, captureSlice, d.capture);
      sliceLog.push({ slice: i + 1, deployment: d.label, captures: d.capture.twoxx - r0, postgresCpu: +(d.capture.cpu.postgres - pg0).toFixed(2) });
    }
    for (const d of fanOrder) {
      for (const [, s] of d.subs) s.reset();
      d.fan = { sent: 0, ok: 0, cpu: { node: 0, postgres: 0, wall: 0 } };
    }
    const seen = new Map<Deployment, number>();
    for (const [i, d] of fanSlices.entries()) {
      const k = seen.get(d) ?? 0;
      await checkpoint();
      await fanSlice(ctx, d, k * perSlice, `fan-out ${i + 1}/${fanSlices.length}`);
      seen.set(d, k + 1);
    }
    await sleep(1000);
    const fans = new Map<Deployment, Fan>();
    for (const d of fanOrder) fans.set(d, await fanReport(d));
    for (const d of fanOrder) await Promise.all(d.subs.map(([, s]) => s.close()));

    progress('  NOTIFY alone: how many the cluster takes');
    ceiling = await notifyCeiling(ctx);
    const outageId = `${tag}-nats-outage`;
    await createWebhooks(natsPair.bases[0]!.url, [outageId]);
    out = await outage(nats, natsPair.bases[0]!, natsPair.bases[1]!, outageId);
    progressDone();
    const load1 = loadavg();
    const r = report(started, { single, two, notify, aOnly, natsPair }, fans, ceiling, out, load0, load1);
    r.details.captureSlices = sliceLog;
    return r;
  } finally {
    await Promise.all(deployments.flatMap((d) => d.subs.map(([, s]) => s.close())));
    await Promise.all(deployments.flatMap((d) => d.procs.map((p) => p.stop())));
    await nats.close();
    for (const name of names) await ctx.sql.unsafe(`drop database if exists ${dbPrefix}_${name} with (force)`).catch(() => undefined);
  }
}

interface All {
  single: Deployment;
  two: Deployment;
  notify: Deployment;
  aOnly: Deployment;
  natsPair: Deployment;
}

function report(
  started: number,
  { single, two, notify, aOnly, natsPair }: All,
  fans: Map<Deployment, Fan>,
  ceiling: Awaited<ReturnType<typeof notifyCeiling>>,
  out: Awaited<ReturnType<typeof outage>>,
  load0: number[],
  load1: number[],
): ScenarioResult {
  const all = [single, two, notify, natsPair];
  const ref = single.capture;
  const refFan = fans.get(single)!;
  const refP99 = refFan.all.p99;
  const rows: Row[] = [];
  for (const m of [...all, aOnly]) {
    const c = m.capture;
    rows.push({
      metric: `capture req/s: ${m.label}`,
      hooky: `${fmt.int(c.rps)} (${fmt.ratio(c.rps / ref.rps)}; ${c.failed} failed)`,
      reference: fmt.int(ref.rps),
      target: m === aOnly ? 'NOTIFY costs ≤ 10 %' : '',
      met: c.failed > 0 ? false : m === aOnly ? c.rps >= 0.9 * ref.rps : null,
    });
  }
  for (const m of [...all, aOnly]) rows.push({ metric: `CPU µs per durable capture, node + postgres: ${m.label}`, hooky: usText(m.capture), reference: usText(ref), target: '≤ 40 µs (goal)', met: null });
  for (const m of [...all, aOnly]) rows.push({ metric: `cores busy while capturing: ${m.label}`, hooky: cores(m.capture), reference: cores(ref), target: `of ${cpus().length}`, met: null });
  const perBatch = (c: Capture) => (c.batches ? ((c.cpu.node + c.cpu.postgres) * 1e6) / c.batches : NaN);
  const rowsPerBatch = (c: Capture) => (c.batches ? c.twoxx / c.batches : NaN);
  rows.push({
    metric: 'NOTIFY per batch: batches, rows per batch, node + postgres µs per batch (notify A only vs single)',
    hooky: `${fmt.int(aOnly.capture.batches ?? NaN)}, ${rowsPerBatch(aOnly.capture).toFixed(1)}, ${perBatch(aOnly.capture).toFixed(0)}`,
    reference: `${fmt.int(ref.batches ?? NaN)}, ${rowsPerBatch(ref).toFixed(1)}, ${perBatch(ref).toFixed(0)}`,
    target: '',
    met: null,
  });
  rows.push({
    metric: `NOTIFY alone, ${ceiling.senders} connections, one listener: NOTIFY/s; postgres µs per NOTIFY`,
    hooky: `${fmt.int(ceiling.perSecond)}/s (${ceiling.postgresCoresBusy.toFixed(2)} pg cores); ${ceiling.postgresUsPerNotify.toFixed(0)} µs`,
    reference: '—',
    target: '',
    met: null,
  });
  for (const m of all) {
    const f = fans.get(m)!;
    rows.push({
      metric: `fan-out delivery p50 / p99, ${subscribers} subscribers, ${fanRate}/s: ${m.label}`,
      hooky: `${fmt.ms(f.all.p50)} / ${fmt.ms(f.all.p99)}`,
      reference: `${fmt.ms(refFan.all.p50)} / ${fmt.ms(refP99)}`,
      target: '',
      met: null,
    });
  }
  const fanUs = (f: Fan) => `${((f.cpu.node * 1e6) / f.ok).toFixed(0)} + ${((f.cpu.postgres * 1e6) / f.ok).toFixed(0)}`;
  for (const m of all) rows.push({ metric: `fan-out CPU µs per capture delivered to ${subscribers}, node + postgres: ${m.label}`, hooky: fanUs(fans.get(m)!), reference: fanUs(refFan), target: '', met: null });
  for (const m of [two, notify, natsPair]) {
    for (const [name, g] of Object.entries(fans.get(m)!.groups)) {
      const cross = name !== 'A→A';
      rows.push({
        metric: `delivery ${name} p50 / p99 (missed, duplicates): ${m.label}`,
        hooky: `${fmt.ms(g.p50)} / ${fmt.ms(g.p99)} (${g.missed}, ${g.duplicates})`,
        reference: `single ${fmt.ms(refFan.all.p50)} / ${fmt.ms(refP99)}`,
        target: cross ? `p99 ≤ 2 × reference (${fmt.ratio(g.p99 / refP99)}), 0 missed, 0 duplicated` : '0 missed, 0 duplicated',
        met: (cross ? g.p99 <= 2 * refP99 : true) && g.missed === 0 && g.duplicates === 0,
      });
    }
  }
  rows.push({
    metric: `nats outage 5 s at ${outageRate}/s: restart → B has every earlier request`,
    hooky: `${fmt.int(out.healMs)} ms (${out.duringOutage} sent meanwhile, ${out.filled} read from Postgres; ${out.missed} missed, ${out.duplicates} duplicated)`,
    reference: '—',
    target: '≤ 2,000 ms, 0 missed',
    met: out.healMs <= 2000 && out.missed === 0,
  });
  rows.push({ metric: '2 workers ran as', hooky: two.note, reference: 'one process', target: '', met: null });
  rows.push({
    metric: 'machine load average (1 min), start → end',
    hooky: `${load0[0]!.toFixed(1)} → ${load1[0]!.toFixed(1)} on ${cpus().length} cores`,
    reference: '',
    target: 'other work shares the machine',
    met: null,
  });
  const plain = (d: Deployment) => ({ label: d.label, note: d.note, capture: d.capture, cpuPerCapture: perCapture(d.capture), fan: fans.get(d) });
  return result('scale', started, rows, {
    connections,
    warmup,
    captureSlice,
    body: captureBody.length,
    subscribers,
    fanRate,
    fanSeconds,
    fanBody,
    loadavg: { start: load0, end: load1 },
    deployments: [single, two, notify, aOnly, natsPair].map(plain),
    notifyCeiling: ceiling,
    natsOutage: out,
  });
}
