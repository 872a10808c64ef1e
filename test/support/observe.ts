import { readFileSync } from 'node:fs';

/** One sample of a Prometheus metric from /metrics (`name` with its labels, e.g. `x{code="A"}`); NaN when absent. */
export async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}

/** Polls until `check` holds, so tests wait for the server rather than sleep a guessed time. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resident set size of a process, in MiB, from /proc (Linux). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** Samples `rssMiB(pid)` every `everyMs` until stopped; returns the peak. */
export function rssPeak(pid: number, everyMs = 50) {
  let peak = rssMiB(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      clearInterval(timer); // the process exited: the peak so far stands
    }
  }, everyMs);
  return {
    stop(): number {
      clearInterval(timer);
      return peak;
    },
  };
}

/**
 * The figures a fault test observed (requests in flight, 503s, RSS…), written to stderr as one
 * JSON line when HOOKY_TEST_FIGURES=1, so a run can be quoted without changing the assertions.
 */
export function figures(test: string, values: Record<string, unknown>): void {
  if (process.env.HOOKY_TEST_FIGURES === '1') process.stderr.write(`figures ${JSON.stringify({ test, ...values })}\n`);
}
