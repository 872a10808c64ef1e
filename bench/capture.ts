/**
 * capture: autocannon (its own process), 100 connections, 10 s after a 3 s warm-up, POST a 1 KB
 * JSON body to a capture URL. Reference, same run, same app: the same load on ANY /bench/noop,
 * which reads the body and answers 200 without storing it (HOOKY_BENCH_NOOP=1). The 10 s of each
 * are two 5 s slices, interleaved no-op, capture, capture, no-op.
 * lost = 2xx answers whose request id is not in Postgres (must be 0).
 * Then a sweep: captures at 10 to 1,000 connections, 3 s each, with how busy the whole machine
 * was meanwhile: req/s should rise with connections until the CPU is full, not stop below it
 * (a writer that waits on its own chain would flatten out with cores to spare).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { runCannon, type CannonResult } from './support/cannon.js';
import { createWebhooks, jsonBody, sleep } from './support/http.js';
import { cpuOfCluster, machineCpu, startHooky, type Target } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type ScenarioResult } from './support/report.js';

export const connections = 100;
export const duration = 10;
const warmup = 3;
const sweep = [10, 50, 100, 300, 1000];
const sweepSeconds = 3;
const body = jsonBody(1024, { event: 'invoice.paid', amount: 4200 });

interface Measured extends CannonResult {
  serverCpu: number;
  postgresCpu: number;
  /** CPU seconds used meanwhile by everything else on the machine (other users' work). */
  otherCpu: number;
}

/** Runs one autocannon pass and the CPU each side used meanwhile. */
export async function measure(ctx: BenchContext, label: string, server: Target, paths: string[], seconds: number, idsFile?: string, conns = connections): Promise<Measured> {
  const pgCpu = () => (ctx.postmasterPid ? cpuOfCluster(ctx.postmasterPid) : NaN);
  const cpu0 = server.cpu();
  const pg0 = pgCpu();
  const all0 = machineCpu();
  const r = await runCannon({ url: server.url, paths, body, connections: conns, duration: seconds, ...(idsFile ? { idsFile } : {}) }, (s, n) =>
    progress(`  ${label}  ${s}/${seconds} s  ${fmt.int(n)} req/s`),
  );
  const serverCpu = server.cpu() - cpu0;
  const postgresCpu = pgCpu() - pg0;
  return { ...r, serverCpu, postgresCpu, otherCpu: machineCpu() - all0 - serverCpu - (postgresCpu || 0) - r.cpu };
}

/**
 * Two slices as one run: counts and CPU add up, req/s over the summed durations, p50 weighted by
 * requests, p99 and max the worse of the two.
 */
function combine(xs: Measured[]): Measured {
  const sum = (f: (m: Measured) => number) => xs.reduce((a, m) => a + f(m), 0);
  const requests = sum((m) => m.requests);
  return {
    requests,
    rps: requests / sum((m) => m.duration),
    latency: {
      p50: sum((m) => m.latency.p50 * m.requests) / requests,
      p99: Math.max(...xs.map((m) => m.latency.p99)),
      max: Math.max(...xs.map((m) => m.latency.max)),
      mean: sum((m) => m.latency.mean * m.requests) / requests,
    },
    duration: sum((m) => m.duration),
    twoxx: sum((m) => m.twoxx),
    non2xx: sum((m) => m.non2xx),
    errors: sum((m) => m.errors),
    timeouts: sum((m) => m.timeouts),
    ids: sum((m) => m.ids),
    cpu: sum((m) => m.cpu),
    perSecond: xs.flatMap((m) => m.perSecond),
    serverCpu: sum((m) => m.serverCpu),
    postgresCpu: sum((m) => m.postgresCpu),
    otherCpu: sum((m) => m.otherCpu),
  };
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const workers = Number(process.env.HOOKY_WORKERS ?? 1);
  const server = await startHooky({ databaseUrl: ctx.databaseUrl, cpuProfDir: ctx.profileDir });
  try {
    const hook = `bench-capture-${Date.now().toString(36)}`;
    await createWebhooks(server.url, [`${hook}-warm`, hook]);

    await measure(ctx, 'no-op warm-up', server, ['/bench/noop'], warmup);
    await measure(ctx, 'capture warm-up', server, [`/h/${hook}-warm`], warmup);
    // Two slices each, in the order no-op, capture, capture, no-op: whatever else the machine
    // does meanwhile, and any drift over the run, falls on both alike.
    const noopSlices: Measured[] = [];
    const capSlices: Measured[] = [];
    const idsFiles: string[] = [];
    for (const [i, kind] of (['noop', 'capture', 'capture', 'noop'] as const).entries()) {
      const label = `slice ${i + 1}/4 ${kind}`;
      if (kind === 'noop') noopSlices.push(await measure(ctx, label, server, ['/bench/noop'], duration / 2));
      else {
        idsFiles.push(join(ctx.tmpDir, `capture-ids-${i}.txt`));
        capSlices.push(await measure(ctx, label, server, [`/h/${hook}`], duration / 2, idsFiles[idsFiles.length - 1]));
      }
    }
    const noop = combine(noopSlices);
    const cap = combine(capSlices);
    // Another webhook, so that the lost count above stays the slices' own.
    const swept: { connections: number; rps: number; busy: number; non2xx: number }[] = [];
    for (const n of sweep) {
      // Busy over the wall time of the pass, autocannon's start-up included (CPU is sampled around it).
      const all0 = machineCpu();
      const t0 = performance.now();
      const m = await measure(ctx, `sweep ${n} connections`, server, [`/h/${hook}-warm`], sweepSeconds, undefined, n);
      const wall = (performance.now() - t0) / 1000;
      swept.push({ connections: n, rps: m.rps, busy: (machineCpu() - all0) / (cpus().length * wall), non2xx: m.non2xx + m.errors + m.timeouts });
    }
    progressDone();

    // Every 2xx was committed before it was sent; requests still in flight when autocannon
    // stopped may commit a moment later, so wait before counting.
    await sleep(1000);
    const ids = idsFiles.flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
    const [{ rows }] = await ctx.sql<[{ rows: number }]>`select count(*)::int as rows from requests where webhook_id = ${hook}`;
    let found = 0;
    for (let i = 0; i < ids.length; i += 50_000) {
      const chunk = ids.slice(i, i + 50_000);
      const [r] = await ctx.sql<[{ n: number }]>`select count(*)::int as n from requests where id = any(${chunk}::uuid[])`;
      found += r.n;
    }
    const lost = cap.twoxx - found;
    const ratio = cap.rps / noop.rps;

    return result(
      'capture',
      started,
      [
        { metric: 'workers (HOOKY_WORKERS)', hooky: String(workers), reference: String(workers), target: '', met: null },
        { metric: 'req/s', hooky: fmt.int(cap.rps), reference: fmt.int(noop.rps), target: `≥ 0.5 × reference (${fmt.ratio(ratio)})`, met: ratio >= 0.5 },
        { metric: 'latency p50', hooky: fmt.ms(cap.latency.p50), reference: fmt.ms(noop.latency.p50), target: '', met: null },
        { metric: 'latency p99', hooky: fmt.ms(cap.latency.p99), reference: fmt.ms(noop.latency.p99), target: '', met: null },
        { metric: 'non-2xx + errors', hooky: fmt.int(cap.non2xx + cap.errors + cap.timeouts), reference: fmt.int(noop.non2xx + noop.errors + noop.timeouts), target: '0', met: cap.non2xx + cap.errors + cap.timeouts === 0 },
        { metric: 'lost (2xx − rows)', hooky: `${fmt.int(lost)} (2xx ${fmt.int(cap.twoxx)}, rows ${fmt.int(rows)})`, reference: '—', target: '0', met: lost === 0 && ids.length === cap.twoxx },
        {
          metric: 'CPU µs per request: node / postgres',
          hooky: `${((cap.serverCpu * 1e6) / cap.requests).toFixed(1)} / ${((cap.postgresCpu * 1e6) / cap.requests).toFixed(1)}`,
          reference: `${((noop.serverCpu * 1e6) / noop.requests).toFixed(1)} / —`,
          target: '',
          met: null,
        },
        {
          metric: 'CPU s: node / postgres / autocannon / rest of machine',
          hooky: `${cap.serverCpu.toFixed(1)} / ${cap.postgresCpu.toFixed(1)} / ${cap.cpu.toFixed(1)} / ${cap.otherCpu.toFixed(1)}`,
          reference: `${noop.serverCpu.toFixed(1)} / ${noop.postgresCpu.toFixed(1)} / ${noop.cpu.toFixed(1)} / ${noop.otherCpu.toFixed(1)}`,
          target: `of ${cpus().length * duration} core-s`,
          met: null,
        },
        {
          metric: `capture req/s by connections (machine CPU busy), ${sweepSeconds} s each`,
          hooky: swept.map((x) => `${x.connections}: ${fmt.int(x.rps)} (${Math.round(x.busy * 100)} %)`).join(' · '),
          reference: '—',
          target: 'rises until the CPU is full; 0 non-2xx',
          met: swept.every((x) => x.non2xx === 0) ? null : false,
        },
      ],
      { workers, body: body.length, connections, duration, warmup, hooky: cap, reference: noop, slices: { hooky: capSlices, reference: noopSlices }, rows, idsSeen: ids.length, found, lost, sweep: swept },
    );
  } finally {
    await server.stop();
  }
}
