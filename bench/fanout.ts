/**
 * fanout: 200 WebSocket subscribers in one room, 200 more spread over 10 other rooms; a paced
 * sender captures 500 requests/s for 10 s into the first room, each body carrying its send time.
 * Latency = receipt at a subscriber − send time, over every (subscriber, message).
 * Reference, same run: bench/reference.ts, a bare uWS server publishing the same payload
 * without storage, to its own identical set of subscribers. Both servers run throughout; the
 * sender alternates between them in 5 s slices (reference, hooky, hooky, reference).
 */
import { cpus } from 'node:os';
import { createWebhooks, jsonBody, scrape, sleep } from './support/http.js';
import { paced, type PacedResult } from './support/pacer.js';
import { cpuOfCluster, machineCpu, startHooky, startReference, type Target } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type ScenarioResult } from './support/report.js';
import { histogramOf, percentiles, quantileBetween } from './support/stats.js';
import { startSubscribers, type OpenResult, type Subscribers } from './support/subscribers.js';

const hotSubs = 200;
const coldSubs = 200;
const coldRooms = 10;
const rate = 500;
const seconds = 10;
// Each side gets two slices of half the time, interleaved.
const sliceSeconds = seconds / 2;
const bodySize = 256;

interface Run {
  send: PacedResult;
  /** Time from sending a capture to its HTTP answer. */
  answer: { p50: number; p99: number };
  p50: number;
  p99: number;
  max: number;
  deliveries: number;
  expected: number;
  missedTotal: number;
  missedMaxPerSub: number;
  subsMissing: number;
  misdelivered: number;
  duplicates: number;
  openMs: number;
  openFailed: number;
  /** CPU seconds during its slices: the server, its Postgres, the whole machine. */
  cpu: { server: number; postgres: number; machine: number; wall: number };
}

/** What hooky's own histograms say over its slices: where a capture's wait goes. */
interface Inside {
  batches: number;
  rowsPerBatch: number;
  batchMs: { p50: number; p99: number };
  eventLoopDelayMs: { p50: number; p99: number };
}

const histograms = ['hooky_batch_seconds', 'hooky_event_loop_delay_seconds', 'hooky_batch_rows'] as const;
type Scrape = Record<(typeof histograms)[number], Map<number, number>> & { rows: number };

async function scrapeHistograms(url: string): Promise<Scrape> {
  const text = await scrape(url);
  const rows = Number(/^hooky_batch_rows_sum (\S+)$/m.exec(text)?.[1] ?? NaN);
  return { ...(Object.fromEntries(histograms.map((h) => [h, histogramOf(text, h)])) as Record<(typeof histograms)[number], Map<number, number>>), rows };
}

function insideOf(a: Scrape, b: Scrape): Inside {
  const q = (name: (typeof histograms)[number], p: number) => quantileBetween(a[name], b[name], p);
  const batch50 = q('hooky_batch_seconds', 0.5);
  return {
    batches: batch50.count,
    rowsPerBatch: (b.rows - a.rows) / batch50.count,
    batchMs: { p50: batch50.value * 1000, p99: q('hooky_batch_seconds', 0.99).value * 1000 },
    eventLoopDelayMs: { p50: q('hooky_event_loop_delay_seconds', 0.5).value * 1000, p99: q('hooky_event_loop_delay_seconds', 0.99).value * 1000 },
  };
}

interface Side {
  label: string;
  server: Target;
  subs: Subscribers;
  hot: string;
  opened: OpenResult;
  postmasterPid: number | undefined;
  sends: PacedResult[];
  cpu: Run['cpu'];
}

async function open(label: string, server: Target, tag: string, postmasterPid: number | undefined): Promise<Side> {
  const hot = `${tag}-hot`;
  const cold = Array.from({ length: coldRooms }, (_, i) => `${tag}-cold-${i}`);
  const ids = [...Array.from({ length: hotSubs }, () => hot), ...Array.from({ length: coldSubs }, (_, i) => cold[i % coldRooms]!)];
  const subs = await startSubscribers({ webhookIds: ids, processes: 2, maxSeq: rate * seconds });
  progress(`  ${label}: opening ${ids.length} subscribers`);
  const opened = await subs.open(server.wsUrl);
  return { label, server, subs, hot, opened, postmasterPid, sends: [], cpu: { server: 0, postgres: 0, machine: 0, wall: 0 } };
}

/** One slice of the paced load on one side; CPU is added up over the side's slices. */
async function slice(side: Side, firstSeq: number, label: string) {
  const pg = () => (side.postmasterPid ? cpuOfCluster(side.postmasterPid) : 0);
  const c0 = { server: side.server.cpu(), postgres: pg(), machine: machineCpu(), wall: performance.now() };
  const send = await paced(
    () => `${side.server.url}/h/${side.hot}`,
    rate,
    sliceSeconds,
    (seq, t) => jsonBody(bodySize, { seq, t }),
    (k, total) => progress(`  ${label}: ${side.label} ${k}/${total} captures sent`),
    firstSeq,
  );
  side.sends.push(send);
  side.cpu.server += side.server.cpu() - c0.server;
  side.cpu.postgres += pg() - c0.postgres;
  side.cpu.machine += machineCpu() - c0.machine;
  side.cpu.wall += (performance.now() - c0.wall) / 1000;
}

async function finish(side: Side): Promise<Run> {
  const rep = await side.subs.report();
  const [p50, p99, max] = percentiles(rep.latencies, [50, 99, 100]);
  const send: PacedResult = {
    sent: sum(side.sends.map((s) => s.sent)),
    ok: sum(side.sends.map((s) => s.ok)),
    non2xx: sum(side.sends.map((s) => s.non2xx)),
    errors: sum(side.sends.map((s) => s.errors)),
    sendSeconds: sum(side.sends.map((s) => s.sendSeconds)),
    rate: Math.min(...side.sends.map((s) => s.rate)),
    maxLagMs: Math.max(...side.sends.map((s) => s.maxLagMs)),
    answerMs: side.sends.flatMap((s) => s.answerMs),
  };
  const [a50, a99] = percentiles(Float64Array.from(send.answerMs), [50, 99]);
  send.answerMs = []; // summarised above; kept out of the result file
  const hotReports = rep.subs.filter((s) => s.webhookId === side.hot);
  const missed = hotReports.map((s) => Math.max(0, send.ok - s.unique));
  return {
    send,
    answer: { p50: a50!, p99: a99! },
    p50: p50!,
    p99: p99!,
    max: max!,
    deliveries: rep.latencies.length,
    expected: send.ok * hotSubs,
    missedTotal: sum(missed) + (hotSubs - hotReports.length) * send.ok,
    missedMaxPerSub: Math.max(0, ...missed),
    subsMissing: missed.filter((m) => m > 0).length,
    misdelivered: sum(rep.subs.map((s) => s.wrongRoom)),
    duplicates: sum(rep.subs.map((s) => s.duplicates)),
    openMs: side.opened.ms,
    openFailed: side.opened.failed,
    cpu: side.cpu,
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const cpuText = (r: Run) =>
  `${(r.cpu.server / r.cpu.wall).toFixed(2)} / ${(r.cpu.postgres / r.cpu.wall).toFixed(2)} / ${(r.cpu.machine / r.cpu.wall).toFixed(2)} of ${cpus().length} cores`;

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const tag = `fan-${Date.now().toString(36)}`;
  const reference = await startReference(ctx.profileDir);
  const server = await startHooky({ databaseUrl: ctx.databaseUrl, cpuProfDir: ctx.profileDir });
  const sides: Side[] = [];
  let hk: Run;
  let ref: Run;
  let inside: Inside | undefined;
  try {
    await createWebhooks(server.url, [`${tag}-hot`, ...Array.from({ length: coldRooms }, (_, i) => `${tag}-cold-${i}`)]);
    const r = await open('reference', reference, tag, undefined);
    sides.push(r);
    const h = await open('hooky', server, tag, ctx.postmasterPid);
    sides.push(h);
    await sleep(500);
    r.subs.reset();
    h.subs.reset();
    // Slices in the order reference, hooky, hooky, reference: whatever else the machine does
    // meanwhile, and any drift over the run, falls on both sides alike.
    const perSlice = rate * sliceSeconds;
    const order = [r, h, h, r];
    const seen = new Map<Side, number>();
    let before: Scrape | undefined;
    for (const [i, side] of order.entries()) {
      const k = seen.get(side) ?? 0;
      // hooky's two slices are back to back: its histograms are read around both.
      if (side === h && k === 0) before = await scrapeHistograms(server.url);
      await slice(side, k * perSlice, `slice ${i + 1}/${order.length}`);
      if (side === h && k === 1) inside = insideOf(before!, await scrapeHistograms(server.url));
      seen.set(side, k + 1);
    }
    await sleep(1000);
    ref = await finish(r);
    hk = await finish(h);
  } finally {
    await Promise.all(sides.map((s) => s.subs.close()));
    await Promise.all([reference.stop(), server.stop()]);
  }
  progressDone();
  const held = (r: Run) => r.send.rate >= 0.98 * rate && r.send.ok === r.send.sent;
  const offered = (r: Run) => `${fmt.int(r.send.rate)}/s, ${fmt.int(r.send.ok)}/${fmt.int(r.send.sent)} 2xx, lag ≤ ${fmt.ms(r.send.maxLagMs)}`;
  return result(
    'fanout',
    started,
    [
      { metric: `offered ${rate}/s × ${seconds} s`, hooky: offered(hk), reference: offered(ref), target: 'rate held, all 2xx', met: held(hk) },
      {
        metric: 'capture answered (HTTP) p50 / p99',
        hooky: `${fmt.ms(hk.answer.p50)} / ${fmt.ms(hk.answer.p99)}`,
        reference: `${fmt.ms(ref.answer.p50)} / ${fmt.ms(ref.answer.p99)}`,
        target: '',
        met: null,
      },
      { metric: 'delivery latency p50', hooky: fmt.ms(hk.p50), reference: fmt.ms(ref.p50), target: '', met: null },
      { metric: 'delivery latency p99', hooky: fmt.ms(hk.p99), reference: fmt.ms(ref.p99), target: `≤ 2 × reference (${fmt.ratio(hk.p99 / ref.p99)})`, met: hk.p99 <= 2 * ref.p99 },
      { metric: 'delivery latency max', hooky: fmt.ms(hk.max), reference: fmt.ms(ref.max), target: '', met: null },
      {
        metric: "inside hooky: batches (rows each); batch INSERT + commit p50 / p99; event-loop delay p50 / p99",
        hooky: inside
          ? `${fmt.int(inside.batches)} (${inside.rowsPerBatch.toFixed(1)}); ${fmt.ms(inside.batchMs.p50)} / ${fmt.ms(inside.batchMs.p99)}; ${fmt.ms(inside.eventLoopDelayMs.p50)} / ${fmt.ms(inside.eventLoopDelayMs.p99)}`
          : '—',
        reference: '—',
        target: '',
        met: null,
      },
      {
        metric: `deliveries (${hotSubs} subscribers)`,
        hooky: `${fmt.int(hk.deliveries)} of ${fmt.int(hk.expected)}`,
        reference: `${fmt.int(ref.deliveries)} of ${fmt.int(ref.expected)}`,
        target: 'all',
        met: hk.deliveries === hk.expected,
      },
      {
        metric: 'missed per subscriber (max; subscribers missing any)',
        hooky: `${fmt.int(hk.missedMaxPerSub)}; ${hk.subsMissing}`,
        reference: `${fmt.int(ref.missedMaxPerSub)}; ${ref.subsMissing}`,
        target: '0',
        met: hk.missedTotal === 0 && hk.openFailed === 0,
      },
      { metric: 'delivered to the wrong room', hooky: fmt.int(hk.misdelivered), reference: fmt.int(ref.misdelivered), target: '0', met: hk.misdelivered === 0 },
      {
        metric: 'CPU while sending: server / its postgres / whole machine',
        hooky: cpuText(hk),
        reference: cpuText(ref),
        target: '',
        met: null,
      },
      { metric: 'duplicates', hooky: fmt.int(hk.duplicates), reference: fmt.int(ref.duplicates), target: '0', met: hk.duplicates === 0 },
    ],
    { hotSubs, coldSubs, coldRooms, rate, seconds, bodySize, hooky: { ...hk, inside }, reference: ref },
  );
}
