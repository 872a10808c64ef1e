import { HttpError } from './errors.js';
import { exchange, send, sendError } from './http.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { within } from './timeout.js';
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
// A 503 is the error table's (its body {"error", "message"} and Retry-After), with the `status`
// a probe reads beside it.
const notReady = (code: 'draining' | 'storage_unavailable') => new HttpError(code, undefined, { status: code });
const draining = notReady('draining');
const unavailable = notReady('storage_unavailable');

/** `/healthz` (the process runs), `/readyz` (it can take captures), `/metrics` (Prometheus). */
export function registerHealth(app: TemplatedApp, deps: Deps): void {
  const metricsHeaders = { 'content-type': deps.metrics.contentType };
  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
  });

  app.get('/readyz', (res) => {
    const ex = exchange(res);
    if (deps.isDraining()) return sendError(ex, draining);
    within(deps.ping(), pingTimeoutMs).then(
      () => (deps.isDraining() ? sendError(ex, draining) : send(ex, 200, '{"status":"ready"}', json)),
      () => sendError(ex, unavailable),
    );
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
