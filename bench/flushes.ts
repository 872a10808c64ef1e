/**
 * flushes: the capture load of bench/capture.ts (autocannon, 100 connections, 1 KB JSON) against
 * hooky with HOOKY_WRITER_FLUSHES = 1, 2, 3 and 4, each with one webhook and with 50 (the
 * connections spread over them), beside the no-op route of the same server. One server per N,
 * started twice: the rounds go N = 1, 2, 3, 4 then 4, 3, 2, 1, so drift and the other work on the
 * machine fall on every N alike. Each server measures no-op, one webhook, many, no-op: the ratio
 * is to the mean of its own two no-op slices. Each row gives the mean of the two rounds and
 * their range (min–max). During the captures, what hooky's busy Postgres backends wait on is
 * sampled from pg_stat_activity every 50 ms (CPU = not waiting).
 * Per batch, from /metrics: rows (hooky_batch_rows) and the time from sending the INSERT to its
 * answer (hooky_batch_seconds). lost = 2xx answers whose request id is not in Postgres (must be 0).
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { measure } from './capture.js';
import { createWebhooks, scrape, sleep } from './support/http.js';
import { startHooky } from './support/proc.js';
import { progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type Row, type ScenarioResult } from './support/report.js';

const flushes = [1, 2, 3, 4];
const seconds = 5;
const warmup = 2;
const manyWebhooks = 50;

type Load = 'noop' | 'one' | 'many';

interface Figures {
  rps: number;
  /** req/s over the no-op req/s of the same server (its two slices around the captures). */
  ratio: number;
  nodeUs: number;
  pgUs: number;
  rowsPerBatch: number;
  msPerBatch: number;
  load: number;
  non2xx: number;
  /** Share of samples of hooky's active Postgres backends in each wait event ('' = on CPU). */
  waits: Record<string, number>;
}

/** Samples what hooky's busy Postgres backends wait on, every 50 ms, until `stop` is called. */
function sampleWaits(ctx: BenchContext) {
  const counts = new Map<string, number>();
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const rows = await ctx.sql<{ w: string }[]>`
        select coalesce(wait_event_type || ':' || wait_event, 'CPU') as w from pg_stat_activity
        where application_name = 'hooky' and state = 'active'`;
      for (const r of rows) counts.set(r.w, (counts.get(r.w) ?? 0) + 1);
      samples += rows.length;
      await sleep(50);
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, n / samples]));
  };
}

/** Sum and count of a Prometheus histogram in /metrics text. */
function sumCount(text: string, name: string): { sum: number; count: number } {
  const get = (suffix: string) => Number(new RegExp(`^${name}_${suffix} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { sum: get('sum'), count: get('count') };
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const runs = new Map<string, Figures[]>();
  let twoxx = 0;
  const idsFiles: string[] = [];
  for (const [round, order] of [flushes, [...flushes].reverse()].entries()) {
    for (const n of order) {
      const server = await startHooky({ databaseUrl: ctx.databaseUrl, cpuProfDir: ctx.profileDir, env: { HOOKY_WRITER_FLUSHES: String(n) } });
      try {
        const base = `bench-flushes-${Date.now().toString(36)}-${n}`;
        const many = Array.from({ length: manyWebhooks }, (_, i) => `${base}-${i}`);
        await createWebhooks(server.url, [base, ...many]);
        await measure(ctx, `N=${n} warm-up`, server, [`/h/${base}`], warmup);
        const measured: [Load, Omit<Figures, 'ratio'>][] = [];
        for (const load of ['noop', 'one', 'many', 'noop'] as Load[]) {
          const paths = load === 'noop' ? ['/bench/noop'] : load === 'one' ? [`/h/${base}`] : many.map((h) => `/h/${h}`);
          const idsFile = load === 'noop' ? undefined : join(ctx.tmpDir, `flushes-${round}-${n}-${load}.txt`);
          if (idsFile) idsFiles.push(idsFile);
          const before = await scrape(server.url);
          const waits = load === 'noop' ? undefined : sampleWaits(ctx);
          const m = await measure(ctx, `round ${round + 1}/2 N=${n} ${load}`, server, paths, seconds, idsFile);
          const after = await scrape(server.url);
          const waited = (await waits?.()) ?? {};
          const rows = [sumCount(before, 'hooky_batch_rows'), sumCount(after, 'hooky_batch_rows')];
          const time = [sumCount(before, 'hooky_batch_seconds'), sumCount(after, 'hooky_batch_seconds')];
          const batches = rows[1]!.count - rows[0]!.count;
          if (load !== 'noop') twoxx += m.twoxx;
          measured.push([
            load,
            {
              rps: m.rps,
              nodeUs: (m.serverCpu * 1e6) / m.requests,
              pgUs: (m.postgresCpu * 1e6) / m.requests,
              rowsPerBatch: (rows[1]!.sum - rows[0]!.sum) / batches,
              msPerBatch: ((time[1]!.sum - time[0]!.sum) * 1000) / batches,
              load: loadavg()[0]!,
              non2xx: m.non2xx + m.errors + m.timeouts,
              waits: waited,
            },
          ]);
        }
        const noopRps = measured.filter(([l]) => l === 'noop').reduce((a, [, f]) => a + f.rps, 0) / 2;
        for (const [load, f] of measured) {
          const key = `${load} ${load === 'noop' ? '' : n}`;
          runs.set(key, [...(runs.get(key) ?? []), { ...f, ratio: f.rps / noopRps }]);
        }
      } finally {
        await server.stop();
      }
    }
  }
  progressDone();

  await sleep(1000);
  const ids = idsFiles.flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
  let found = 0;
  for (let i = 0; i < ids.length; i += 50_000) {
    const [r] = await ctx.sql<[{ n: number }]>`select count(*)::int as n from requests where id = any(${ids.slice(i, i + 50_000)}::uuid[])`;
    found += r.n;
  }
  const lost = twoxx - found;

  const span = (xs: number[], f: (x: number) => string) => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    return `${f(mean)} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
  };
  const us = (x: number) => x.toFixed(1);
  const noop = runs.get('noop ')!;
  const noopRps = noop.map((f) => f.rps).reduce((a, b) => a + b, 0) / noop.length;
  /** The three commonest wait events of hooky's busy backends over both rounds. */
  const topWaits = (fs: Figures[]) => {
    const all = new Map<string, number>();
    for (const f of fs) for (const [k, v] of Object.entries(f.waits)) all.set(k, (all.get(k) ?? 0) + v / fs.length);
    return [...all].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, v]) => `${k} ${(v * 100).toFixed(0)} %`).join(', ');
  };
  const rows: Row[] = [];
  for (const load of ['one', 'many'] as const) {
    for (const n of flushes) {
      const fs = runs.get(`${load} ${n}`)!;
      const rps = fs.map((f) => f.rps);
      rows.push({
        metric: `${load === 'one' ? '1 webhook' : `${manyWebhooks} webhooks`}, N=${n}: req/s (× no-op) · node/pg µs per req · rows, ms per batch · load`,
        hooky: `${span(rps, fmt.int)} (${span(fs.map((f) => f.ratio), (x) => x.toFixed(2))}) · ${span(fs.map((f) => f.nodeUs), us)} / ${span(fs.map((f) => f.pgUs), us)} · ${span(fs.map((f) => f.rowsPerBatch), us)}, ${span(fs.map((f) => f.msPerBatch), (x) => x.toFixed(2))} · ${span(fs.map((f) => f.load), (x) => x.toFixed(1))}`,
        reference: `${fmt.int(noopRps)} no-op; waits ${topWaits(fs)}`,
        target: '',
        met: null,
      });
    }
  }
  rows.push({
    metric: 'no-op req/s, each N, both rounds',
    hooky: '—',
    reference: noop.map((f) => fmt.int(f.rps)).join(', '),
    target: '',
    met: null,
  });
  const failed = [...runs.entries()].filter(([k]) => !k.startsWith('noop')).reduce((a, [, fs]) => a + fs.reduce((b, f) => b + f.non2xx, 0), 0);
  rows.push({ metric: 'non-2xx + errors', hooky: fmt.int(failed), reference: '—', target: '0', met: failed === 0 });
  rows.push({ metric: 'lost (2xx − rows found)', hooky: `${fmt.int(lost)} (2xx ${fmt.int(twoxx)})`, reference: '—', target: '0', met: lost === 0 && ids.length === twoxx });
  return result('flushes', started, rows, { seconds, warmup, manyWebhooks, runs: Object.fromEntries(runs), twoxx, found, lost });
}
