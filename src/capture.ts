import { setTimeout as sleep } from 'node:timers/promises';
import { createBudget } from './budget.js';
import { HttpError, httpErrorOf } from './errors.js';
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
  /** Body bytes being received at once over every capture connection; past it: 503 `overloaded`. */
  maxInflightBytes: number;
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
export function registerCapture(app: TemplatedApp, opts: CaptureOptions, deps: Deps) {
  const { webhooks, writer, metrics, log } = deps;
  // Answers waiting out their webhook's delayMs: their rows are committed, so shutdown sends
  // them before it closes the connections (`answered`).
  const delayed = new Map<NodeJS.Timeout, { due: number; reply: () => void }>();
  // Bodies being received, over every connection: counted from Content-Length before the body is
  // read (as they stream when there is none), given back once the payload is built or the client left.
  const inflight = createBudget(opts.maxInflightBytes, (delta) => metrics.inflightBytes.inc(delta));
  const notFound = new HttpError('not_found', 'Webhook not found');
  const draining = new HttpError('draining');
  const tooManyHeaders = new HttpError('too_many_headers', `More than ${opts.maxHeaders} header fields`, { limit: opts.maxHeaders });
  const conflictingLength = new HttpError('invalid_request', 'Content-Length was sent more than once with different values');
  const unsupportedEncoding = new HttpError('invalid_request', 'Transfer-Encoding must be exactly "chunked", without Content-Length');
  const headersTooLarge = new HttpError('headers_too_large', `Header names and values over ${opts.maxHeaderBytes} bytes`, {
    limit: opts.maxHeaderBytes,
  });

  function fail(ex: Exchange, err: unknown) {
    const httpErr = httpErrorOf(err, log, 'capture');
    metrics.captureErrors.inc(httpErr.status);
    sendError(ex, httpErr);
  }

  /** Answered before the body is read (or while it is: 413, 503), so the connection is closed rather than drained. */
  function refuse(ex: Exchange, err: HttpError) {
    if (ex.done) return;
    metrics.captureErrors.inc(err.status);
    sendError(ex, err, true);
  }

  function answer(ex: Exchange, webhook: Webhook, id: string) {
    metrics.captures.inc();
    const r = webhook.response;
    if (r === null) return send(ex, 200, `{"ok":true,"id":"${id}"}`, okHeaders);
    const headers = r.headers?.['content-type'] ? r.headers : { 'content-type': customDefaultType, ...r.headers };
    const reply = () => send(ex, r.status ?? 200, r.body ?? '', headers);
    if (!r.delayMs) return reply();
    const timer = setTimeout(() => {
      delayed.delete(timer);
      reply();
    }, r.delayMs);
    delayed.set(timer, { due: Date.now() + r.delayMs, reply });
  }

  function enqueue(ex: Exchange, webhook: Webhook | undefined, facts: RequestFacts, body: Buffer) {
    if (ex.done) return;
    if (webhook === undefined) return fail(ex, notFound);
    if (deps.isDraining()) return fail(ex, draining);
    const id = newRequestId();
    const { json } = buildPayload(id, webhook.id, facts, body, new Date());
    // A capture whose connection closes while it waits is dropped: it could not be answered,
    // and its sender, seeing no answer, may send it again.
    writer.write({ id, webhookId: webhook.id, json }, () => ex.done).then(
      (result) => (result === 'stored' ? answer(ex, webhook, id) : result === 'gone' ? fail(ex, notFound) : undefined),
      (err: unknown) => fail(ex, err),
    );
  }

  function capture(res: HttpResponse, req: HttpRequest) {
    const hold = inflight.hold();
    const ex = exchange(res, hold.release);
    const webhookId = req.getParameter(0) ?? '';
    // Everything needed from `req` is copied now: it is gone once this function returns.
    const url = req.getUrl();
    const headers: Record<string, string> = Object.create(null);
    let headerCount = 0;
    // UTF-16 units, not bytes: a unit is 1–3 bytes of UTF-8, so while 3 × the units fit the
    // limit the bytes do too, and only a request near the limit pays for counting its bytes.
    let headerUnits = 0;
    let repeated = 0;
    let framing: HttpError | undefined;
    let contentLength: string | undefined;
    req.forEach((name, value) => {
      headerCount++;
      headerUnits += name.length + value.length;
      if (name === 'content-length') {
        contentLength ??= value;
        if (value !== contentLength) framing = conflictingLength;
      }
      // RFC 6265 §5.4: the cookie-pairs of one request are separated by "; ".
      if (!(name in headers)) headers[name] = value;
      else {
        headers[name] = `${headers[name]}${name === 'cookie' ? '; ' : ', '}${value}`;
        repeated += name.length - 2;
      }
    });
    // RFC 9112 §6.1, §6.3: a body whose length two readers could disagree on is how requests are
    // smuggled past a proxy. uWS decodes any Transfer-Encoding as chunked and uses the first
    // Content-Length, so anything but one length or exactly `chunked` is refused before the body
    // is read. (uWS itself closes, without an answer, a request with both or with a
    // Content-Length that is not a number.)
    const te = headers['transfer-encoding'];
    if (te !== undefined && (te.toLowerCase() !== 'chunked' || contentLength !== undefined)) framing = unsupportedEncoding;
    if (framing !== undefined) return refuse(ex, framing);
    // Headers are stored with every capture: their limits bound a row as the body limit does.
    if (headerCount > opts.maxHeaders) return refuse(ex, tooManyHeaders);
    if (headerUnits * 3 > opts.maxHeaderBytes && headerBytesOf(headers, repeated) > opts.maxHeaderBytes) return refuse(ex, headersTooLarge);
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
    // A sender that waits for 100 Continue is told at once that the webhook does not exist, so it
    // need not send the body. (uWS 20.30 itself writes the 100 before any handler runs.)
    if (continueExpected.test(headers['expect'] ?? '')) {
      if (found === undefined) return refuse(ex, notFound);
      // A failed lookup is answered 503 once the body is read, below.
      if (found instanceof Promise) found.then((w) => w === undefined && refuse(ex, notFound), answeredBelow);
    }
    readBody(
      ex,
      contentLength ?? '',
      opts.maxBodyBytes,
      (body) => {
        if (!(found instanceof Promise)) return enqueue(ex, found, facts, body);
        found.then(
          (w) => enqueue(ex, w, facts, body),
          (err: unknown) => {
            log.warn('webhook lookup failed; answering 503', { webhookId, err });
            fail(ex, new HttpError('storage_unavailable'));
          },
        );
      },
      hold,
      refuse,
    );
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

  return {
    /**
     * Resolves once every answer waiting out its delayMs is sent: each at its time, and those
     * still waiting at `deadline` (a Date.now() value) then. Their rows are stored; an answer
     * sent early beats a connection closed without one, which a sender would retry.
     */
    async answered(deadline: number): Promise<void> {
      // No capture joins them now (draining): waiting for the last one's time is waiting for all.
      const last = Math.max(...[...delayed.values()].map((d) => d.due));
      if (delayed.size > 0) await sleep(Math.max(0, Math.min(deadline, last) - Date.now()));
      for (const [timer, { reply }] of delayed) {
        clearTimeout(timer);
        reply();
      }
      delayed.clear();
    },
  };
}

const noopBody = '{"ok":true}';

/**
 * The bytes of the header names and values the request held. Names are ASCII (uWS's parser
 * takes only token bytes); values may not be. A repeated header's values were joined with ", "
 * or "; " and its name kept once: `repeated` is what that took away (the name less the joint,
 * per repeat).
 */
function headerBytesOf(headers: Record<string, string>, repeated: number): number {
  let bytes = repeated;
  for (const name in headers) bytes += name.length + Buffer.byteLength(headers[name]!);
  return bytes;
}

const answeredBelow = () => {};
const continueExpected = /^100-continue$/i;

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
