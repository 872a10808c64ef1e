import { HttpError } from './errors.js';
import { exchange, send, sendError } from './http.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { TemplatedApp } from './uws.js';

interface Deps {
  metrics: Metrics;
  log: Logger;
  isDraining: () => boolean;
  /** Resolves when Postgres answers a query. */
  ping: () => Promise<void>;
}

const json = { 'content-type': 'application/json' };
const pingTimeoutMs = 2000;

/** `/healthz` (the process runs), `/readyz` (it can take captures), `/metrics` (Prometheus). */
export function registerHealth(app: TemplatedApp, deps: Deps): void {
  const metricsHeaders = { 'content-type': deps.metrics.contentType };
  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
  });

  app.get('/readyz', (res) => {
    const ex = exchange(res);
    if (deps.isDraining()) return send(ex, 503, '{"status":"draining"}', json);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), pingTimeoutMs);
    });
    Promise.race([deps.ping(), timeout]).then(
      () => send(ex, deps.isDraining() ? 503 : 200, deps.isDraining() ? '{"status":"draining"}' : '{"status":"ready"}', json),
      () => send(ex, 503, '{"status":"storage_unavailable"}', json),
    ).finally(() => clearTimeout(timer));
  });

  app.get('/metrics', (res) => {
    const ex = exchange(res);
    deps.metrics.render().then(
      (text) => send(ex, 200, text, metricsHeaders),
      (err: unknown) => {
        deps.log.error('rendering /metrics failed', { err });
        sendError(ex, new HttpError('internal'));
      },
    );
  });
}
