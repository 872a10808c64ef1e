/**
 * fanout: 200 WebSocket subscribers in one room, 200 more spread over 10 other rooms; a paced
 * sender captures 500 requests/s for 10 s into the first room, each body carrying its send time.
 * Latency = receipt at a subscriber − send time, over every (subscriber, message).
 * Reference, same run: bench/reference.ts, a bare uWS server publishing the same payload
 * without storage, under the same subscribers and sender.
 */
import { createWebhooks, jsonBody, sleep } from './support/http.js';
import { paced, type PacedResult } from './support/pacer.js';
import { startHooky, startReference, type Target } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type ScenarioResult } from './support/report.js';
import { percentiles } from './support/stats.js';
import { startSubscribers } from './support/subscribers.js';

const hotSubs = 200;
const coldSubs = 200;
const coldRooms = 10;
const rate = 500;
const seconds = 10;
const bodySize = 256;

interface Run {
  send: PacedResult;
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
}

async function measure(label: string, server: Target, tag: string): Promise<Run> {
  const hot = `${tag}-hot`;
  const cold = Array.from({ length: coldRooms }, (_, i) => `${tag}-cold-${i}`);
  const ids = [...Array.from({ length: hotSubs }, () => hot), ...Array.from({ length: coldSubs }, (_, i) => cold[i % coldRooms]!)];
  const subs = await startSubscribers({ webhookIds: ids, processes: 2, maxSeq: rate * seconds });
  try {
    progress(`  ${label}: opening ${ids.length} subscribers`);
    const opened = await subs.open(server.wsUrl);
    await sleep(500);
    subs.reset();
    const send = await paced(
      () => `${server.url}/h/${hot}`,
      rate,
      seconds,
      (seq, t) => jsonBody(bodySize, { seq, t }),
      (n, total) => progress(`  ${label}: ${n}/${total} captures sent`),
    );
    await sleep(1000);
    const rep = await subs.report();
    const [p50, p99, max] = percentiles(rep.latencies, [50, 99, 100]);
    const hotReports = rep.subs.filter((s) => s.webhookId === hot);
    const missed = hotReports.map((s) => Math.max(0, send.ok - s.unique));
    return {
      send,
      p50: p50!,
      p99: p99!,
      max: max!,
      deliveries: rep.latencies.length,
      expected: send.ok * hotSubs,
      missedTotal: missed.reduce((a, b) => a + b, 0) + (hotSubs - hotReports.length) * send.ok,
      missedMaxPerSub: Math.max(0, ...missed),
      subsMissing: missed.filter((m) => m > 0).length,
      misdelivered: rep.subs.reduce((a, s) => a + s.wrongRoom, 0),
      duplicates: rep.subs.reduce((a, s) => a + s.duplicates, 0),
      openMs: opened.ms,
      openFailed: opened.failed,
    };
  } finally {
    await subs.close();
  }
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const tag = `fan-${Date.now().toString(36)}`;
  const reference = await startReference(ctx.profileDir);
  let ref: Run;
  try {
    ref = await measure('reference', reference, tag);
  } finally {
    await reference.stop();
  }
  const server = await startHooky({ databaseUrl: ctx.databaseUrl, cpuProfDir: ctx.profileDir });
  let hk: Run;
  try {
    await createWebhooks(server.url, [`${tag}-hot`, ...Array.from({ length: coldRooms }, (_, i) => `${tag}-cold-${i}`)]);
    hk = await measure('hooky', server, tag);
  } finally {
    await server.stop();
  }
  progressDone();
  const held = (r: Run) => r.send.rate >= 0.98 * rate && r.send.ok === r.send.sent;
  const offered = (r: Run) => `${fmt.int(r.send.rate)}/s, ${fmt.int(r.send.ok)}/${fmt.int(r.send.sent)} 2xx, lag ≤ ${fmt.ms(r.send.maxLagMs)}`;
  return result(
    'fanout',
    started,
    [
      { metric: `offered ${rate}/s × ${seconds} s`, hooky: offered(hk), reference: offered(ref), target: 'rate held, all 2xx', met: held(hk) },
      { metric: 'delivery latency p50', hooky: fmt.ms(hk.p50), reference: fmt.ms(ref.p50), target: '', met: null },
      { metric: 'delivery latency p99', hooky: fmt.ms(hk.p99), reference: fmt.ms(ref.p99), target: `≤ 2 × reference (${fmt.ratio(hk.p99 / ref.p99)})`, met: hk.p99 <= 2 * ref.p99 },
      { metric: 'delivery latency max', hooky: fmt.ms(hk.max), reference: fmt.ms(ref.max), target: '', met: null },
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
      { metric: 'duplicates', hooky: fmt.int(hk.duplicates), reference: fmt.int(ref.duplicates), target: '0', met: hk.duplicates === 0 },
    ],
    { hotSubs, coldSubs, coldRooms, rate, seconds, bodySize, hooky: hk, reference: ref },
  );
}
