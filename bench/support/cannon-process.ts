/**
 * autocannon in its own process, so the load generator never shares an event loop with the
 * server or the orchestrator. Reads its job as JSON from argv[2], prints one `tick <n>` line per
 * second and finally one `result <json>` line. The ids of 2xx answers go to job.idsFile.
 */
import autocannon from 'autocannon';
import { writeFileSync } from 'node:fs';
import type { CannonJob } from './cannon.js';

const job = JSON.parse(process.argv[2]!) as CannonJob;
const ids: string[] = [];
const idPrefix = '"id":"';
// Every answer goes through the same callback, so the no-op run pays what the capture run pays.
const onResponse = (status: number, body: string) => {
  if (status < 200 || status >= 300) return;
  const at = body.indexOf(idPrefix);
  if (at >= 0) ids.push(body.slice(at + idPrefix.length, body.indexOf('"', at + idPrefix.length)));
};

const instance = autocannon(
  {
    url: job.url,
    connections: job.connections,
    duration: job.duration,
    requests: job.paths.map((path) => ({
      method: 'POST' as const,
      path,
      headers: { 'content-type': 'application/json' },
      body: job.body,
      onResponse,
    })),
  },
  (err, result) => {
    if (err) {
      process.stderr.write(`autocannon: ${err.message}\n`);
      process.exit(1);
    }
    if (job.idsFile) writeFileSync(job.idsFile, ids.join('\n'));
    process.stdout.write(
      `result ${JSON.stringify({
        requests: result.requests.total,
        rps: result.requests.average,
        latency: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max, mean: result.latency.average },
        duration: result.duration,
        twoxx: result['2xx'],
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        ids: ids.length,
        cpu: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      })}\n`,
    );
    process.exit(0);
  },
);
let second = 0;
(instance as unknown as NodeJS.EventEmitter).on('tick', (c: { counter: number }) => process.stdout.write(`tick ${++second} ${c.counter}\n`));
