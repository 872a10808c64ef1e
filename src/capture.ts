import { HttpError } from './errors.js';
import { exchange, readBody, remoteAddress, send, sendError, type Exchange, type Headers } from './http.js';
import { newRequestId } from './ids.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { buildPayload, type RequestFacts } from './payload.js';
import { webhookIdPattern } from './protocol.js';
import type { Webhook } from './store.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';
import type { Writer } from './writer.js';

export interface CaptureOptions {
  maxBodyBytes: number;
  /** Proxies in front of hooky that append to X-Forwarded-For; 0: the header is ignored. */
  trustProxy: number;
  maxHeaders: number;
  maxHeaderBytes: number;
  /** Registers `ANY /bench/noop`, the reference the capture benchmark measures hooky against. */
  benchNoop: boolean;
}

interface Deps {
  webhooks: WebhookCache;
  writer: Writer;
  metrics: Metrics;
  log: Logger;
  isDraining: () => boolean;
}

const okHeaders: Headers = { 'content-type': 'application/json' };
export const customDefaultType = 'text/plain; charset=utf-8';

/**
 * `ANY /h/:id` and `ANY /h/:id/*`: read the body (limit enforced while it streams), build the
 * payload, hand it to the group-commit writer, and answer 2xx only once the row is committed.
 */
export function registerCapture(app: TemplatedApp, opts: CaptureOptions, deps: Deps): void {
  const { webhooks, writer, metrics, log } = deps;
  const notFound = new HttpError('not_found', 'Webhook not found');
  const draining = new HttpError('draining');
  const tooManyHeaders = new HttpError('too_many_headers', `More than ${opts.maxHeaders} header fields`, { limit: opts.maxHeaders });
  const headersTooLarge = new HttpError('headers_too_large', `Header names and values over ${opts.maxHeaderBytes} bytes`, {
    limit: opts.maxHeaderBytes,
  });

  function fail(ex: Exchange, err: unknown) {
    const httpErr = err instanceof HttpError ? err : new HttpError('internal');
    if (!(err instanceof HttpError)) log.error('capture failed', { err });
    metrics.captureErrors.inc(httpErr.status);
    sendError(ex, httpErr);
  }

  function answer(ex: Exchange, webhook: Webhook, id: string) {
    metrics.captures.inc();
    const r = webhook.response;
    if (r === null) return send(ex, 200, `{"ok":true,"id":"${id}"}`, okHeaders);
    const headers = r.headers?.['content-type'] ? r.headers : { 'content-type': customDefaultType, ...r.headers };
    const reply = () => send(ex, r.status ?? 200, r.body ?? '', headers);
    if (r.delayMs) setTimeout(reply, r.delayMs);
    else reply();
  }

  function store(ex: Exchange, webhook: Webhook | undefined, facts: RequestFacts, body: Buffer) {
    if (ex.done) return;
    if (webhook === undefined) return fail(ex, notFound);
    if (deps.isDraining()) return fail(ex, draining);
    const id = newRequestId();
    const { json } = buildPayload(id, webhook.id, facts, body, new Date());
    writer.write({ id, webhookId: webhook.id, json }).then(
      (result) => (result === 'stored' ? answer(ex, webhook, id) : fail(ex, notFound)),
      (err: unknown) => fail(ex, err),
    );
  }

  function capture(res: HttpResponse, req: HttpRequest) {
    const ex = exchange(res);
    const webhookId = req.getParameter(0) ?? '';
    // Everything needed from `req` is copied now: it is gone once this function returns.
    const url = req.getUrl();
    const headers: Record<string, string> = Object.create(null);
    let headerCount = 0;
    let headerBytes = 0;
    req.forEach((name, value) => {
      headerCount++;
      headerBytes += name.length + value.length;
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    });
    // Headers are stored with every capture: their limits bound a row as the body limit does.
    // Answered before the body is read, so the connection is closed rather than drained.
    if (headerCount > opts.maxHeaders || headerBytes > opts.maxHeaderBytes) {
      const err = headerCount > opts.maxHeaders ? tooManyHeaders : headersTooLarge;
      metrics.captureErrors.inc(err.status);
      return sendError(ex, err, true);
    }
    const method = req.getCaseSensitiveMethod().toUpperCase();
    ex.head = method === 'HEAD';
    const facts: RequestFacts = {
      method,
      path: url.slice(3 + webhookId.length) || '/',
      headers,
      rawQuery: req.getQuery() ?? '',
      sourceIp: (opts.trustProxy > 0 && forwardedFor(headers['x-forwarded-for'], opts.trustProxy)) || remoteAddress(res),
    };
    // Looked up while the body streams in; usually answered from the cache at once.
    const found = webhookIdPattern.test(webhookId) ? webhooks.find(webhookId) : undefined;
    readBody(ex, headers['content-length'] ?? '', opts.maxBodyBytes, (body) => {
      if (!(found instanceof Promise)) return store(ex, found, facts, body);
      found.then(
        (w) => store(ex, w, facts, body),
        (err: unknown) => {
          log.warn('webhook lookup failed; answering 503', { webhookId, err });
          fail(ex, new HttpError('storage_unavailable'));
        },
      );
    });
  }

  app.any('/h/:id', capture);
  app.any('/h/:id/*', capture);

  // The same uWS app and the same body reading as a capture, without the payload or storage:
  // what `npm run bench` divides hooky's capture rate by. Off unless HOOKY_BENCH_NOOP=1.
  if (opts.benchNoop) {
    app.any('/bench/noop', (res, req) => {
      const ex = exchange(res);
      readBody(ex, req.getHeader('content-length'), opts.maxBodyBytes, () => send(ex, 200, noopBody, okHeaders));
    });
  }
}

const noopBody = '{"ok":true}';

/**
 * The client as the outermost trusted proxy saw it. Each proxy appends the address it received
 * the request from, so with `hops` proxies the entry `hops` from the right is the one the first
 * of them wrote; anything left of it came from the sender and could be forged.
 */
function forwardedFor(header: string | undefined, hops: number): string | undefined {
  if (!header) return undefined;
  const entries = header.split(',').map((e) => e.trim()).filter((e) => e !== '');
  return entries[Math.max(0, entries.length - hops)];
}
