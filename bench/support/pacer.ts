import { call, keepAlive } from './http.js';

export interface PacedResult {
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  /** Seconds from the first send to the last one. */
  sendSeconds: number;
  /** Achieved send rate over the whole run. */
  rate: number;
  /** Worst lateness of a send behind its schedule, ms. */
  maxLagMs: number;
  /** Time to each answer, ms, in send order. */
  answerMs: number[];
}

/**
 * An open-loop sender: request i leaves at start + i / rate whatever the server does, over a
 * keep-alive pool, with `body(seq, sendTimeUs)` built at the moment it leaves. Send times use
 * process.hrtime (CLOCK_MONOTONIC), which every process on the machine shares.
 */
export async function paced(
  url: (seq: number) => string,
  rate: number,
  seconds: number,
  body: (seq: number, tUs: number) => string,
  onProgress?: (sent: number, total: number) => void,
  firstSeq = 0,
): Promise<PacedResult> {
  const agent = keepAlive(256);
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const r: PacedResult = { sent: 0, ok: 0, non2xx: 0, errors: 0, sendSeconds: 0, rate: 0, maxLagMs: 0, answerMs: new Array<number>(total).fill(NaN) };
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  let lastProgress = 0;
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / interval) + 1);
      while (r.sent < due) {
        const i = r.sent++;
        const seq = firstSeq + i;
        r.maxLagMs = Math.max(r.maxLagMs, performance.now() - (t0 + i * interval));
        const t = performance.now();
        inflight.push(
          call(agent, url(seq), 'POST', body(seq, nowUs())).then(
            (a) => {
              r.answerMs[i] = performance.now() - t;
              if (a.status >= 200 && a.status < 300) r.ok++;
              else r.non2xx++;
            },
            () => void r.errors++,
          ),
        );
      }
      if (now - lastProgress > 250) {
        lastProgress = now;
        onProgress?.(r.sent, total);
      }
      if (r.sent < total) setTimeout(tick, 1);
      else done();
    };
    tick();
  });
  r.sendSeconds = (performance.now() - t0) / 1000;
  r.rate = total / Math.max(r.sendSeconds, seconds - interval / 1000);
  await Promise.all(inflight);
  agent.destroy();
  return r;
}

export function nowUs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
}
