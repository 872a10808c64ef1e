/**
 * soak: 60 s of autocannon (100 connections, closed loop: as fast as hooky answers, i.e. its
 * highest sustained capture rate) spread over 100 webhooks, each with one subscriber. RSS of the
 * server is sampled every second; the first 15 s are warm-up. Event-loop delay comes from the
 * server's own hooky_event_loop_delay_seconds histogram, the difference of two /metrics scrapes.
 * References, same run, same server: for the rate, 5 s of the same load on the no-op route; RSS
 * just after warm-up; event-loop delay idle for 5 s before the load (the same subscribers
 * connected).
 */
import { runCannon } from './support/cannon.js';
import { createWebhooks, jsonBody, scrape, sleep } from './support/http.js';
import { startHooky } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type ScenarioResult } from './support/report.js';
import { histogramOf, mean, quantileBetween, slope } from './support/stats.js';
import { startSubscribers } from './support/subscribers.js';

const seconds = 60;
const warmup = 15;
const webhooks = 100;
const connections = 100;
const eld = 'hooky_event_loop_delay_seconds';

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const tag = `soak-${Date.now().toString(36)}`;
  const ids = Array.from({ length: webhooks }, (_, i) => `${tag}-${String(i).padStart(3, '0')}`);
  const server = await startHooky({ databaseUrl: ctx.databaseUrl, cpuProfDir: ctx.profileDir });
  const subs = await startSubscribers({ webhookIds: ids, processes: 1 });
  try {
    await createWebhooks(server.url, ids);
    const opened = await subs.open(server.wsUrl);
    // Reference for the rate: the same load on the bench-only no-op route of the same server.
    const noop = await runCannon(
      { url: server.url, paths: ['/bench/noop'], body: jsonBody(1024, { event: 'soak' }), connections, duration: 5 },
      (s, n) => progress(`  no-op reference  ${s}/5 s  ${fmt.int(n)} req/s`),
    );
    const idle0 = histogramOf(await scrape(server.url), eld);
    progress('  idle event-loop delay (5 s)');
    await sleep(5000);
    const idle1 = histogramOf(await scrape(server.url), eld);
    subs.reset();

    const rss: number[] = [];
    let loaded0: Map<number, number> | undefined;
    const sampler = setInterval(() => {
      rss.push(server.rss());
      if (rss.length === warmup) void scrape(server.url).then((t) => (loaded0 = histogramOf(t, eld)));
    }, 1000);
    const load = await runCannon(
      { url: server.url, paths: ids.map((id) => `/h/${id}`), body: jsonBody(1024, { event: 'soak' }), connections, duration: seconds },
      (s, n) => progress(`  soak  ${s}/${seconds} s  ${fmt.int(n)} req/s  RSS ${fmt.mb(rss[rss.length - 1] ?? 0)}`),
    );
    clearInterval(sampler);
    const loaded1 = histogramOf(await scrape(server.url), eld);
    await sleep(1000);
    const rep = await subs.report();
    progressDone();

    const after = rss.slice(warmup);
    const ref = mean(rss.slice(warmup, warmup + 10));
    const end = mean(rss.slice(-10));
    const growth = (end - ref) / ref;
    const mbPerMin = (slope(after.map((_, i) => i), after) * 60) / 2 ** 20;
    const idleP99 = quantileBetween(idle0, idle1, 0.99);
    const loadP99 = quantileBetween(loaded0 ?? idle1, loaded1, 0.99);
    const loadP50 = quantileBetween(loaded0 ?? idle1, loaded1, 0.5);
    const delivered = rep.subs.reduce((a, s) => a + s.received, 0);
    const errors = load.non2xx + load.errors + load.timeouts;
    return result(
      'soak',
      started,
      [
        {
          metric: `capture rate, ${seconds} s closed loop (reference: no-op route, 5 s)`,
          hooky: `${fmt.int(load.rps)} req/s (${fmt.ratio(load.rps / noop.rps)})`,
          reference: `${fmt.int(noop.rps)} req/s`,
          target: '',
          met: null,
        },
        { metric: 'non-2xx + errors', hooky: fmt.int(errors), reference: '—', target: '0', met: errors === 0 },
        {
          metric: `server RSS, mean of last 10 s (reference: s ${warmup}–${warmup + 10})`,
          hooky: `${fmt.mb(end)} (${growth >= 0 ? '+' : ''}${(100 * growth).toFixed(1)}%, ${mbPerMin.toFixed(2)} MB/min)`,
          reference: fmt.mb(ref),
          target: 'no growth (≤ +5%)',
          met: growth <= 0.05,
        },
        { metric: 'server RSS min / max after warm-up', hooky: `${fmt.mb(Math.min(...after))} / ${fmt.mb(Math.max(...after))}`, reference: '—', target: '', met: null },
        {
          metric: 'event-loop delay p99 (reference: idle)',
          hooky: `${fmt.ms(loadP99.value * 1000)} (p50 ${fmt.ms(loadP50.value * 1000)})`,
          reference: fmt.ms(idleP99.value * 1000),
          target: 'reported',
          met: null,
        },
        {
          metric: `deliveries to ${webhooks} subscribers (one per room)`,
          hooky: `${fmt.int(delivered)} for ${fmt.int(load['twoxx'])} 2xx`,
          reference: '—',
          target: '≥ 2xx',
          met: delivered >= load.twoxx && opened.failed === 0,
        },
      ],
      { seconds, warmup, webhooks, connections, load, noop, rss, idleP99, loadP99, loadP50, delivered, growth, mbPerMin },
    );
  } finally {
    await subs.close();
    await server.stop();
  }
}
