/**
 * A captured request sent on to another target: rebuilt once here for both the server's resend
 * route and `hooky listen --forward`, with the loop guard `listen` adds, and `listen`'s sender.
 * No uWS here: the CLI imports this module.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { bodyBytes, rawQueryOf } from './payload.js';
import type { CapturedRequest } from './protocol.js';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) describe the connection to hooky, not the request, and
 * host and content-length are set anew for the target. `expect` goes too: the body is already
 * complete, there is nothing to wait for.
 */
const dropped = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length', 'expect']);

/**
 * The header `listen --forward` adds to each request it forwards: the ids of the runs that have
 * forwarded it, comma-separated, each appending its own. A run that captures a request bearing
 * its own id has forwarded it back to itself, maybe through other hooky servers or listeners.
 */
export const forwardHeader = 'x-hooky-forwarded-by';

/** The ids of the `listen` runs that forwarded `req`, oldest first. */
export const forwardedBy = (req: Pick<CapturedRequest, 'headers'>): string[] =>
  (req.headers[forwardHeader] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

export interface Outgoing {
  method: string;
  /** Path and query for the request line: the target's path, the captured sub-path, the query. */
  path: string;
  headers: Record<string, string>;
  /** The body byte for byte, undefined when there was none. */
  body: Buffer | undefined;
}

/**
 * A captured request rebuilt for `target`: the same method, the sub-path appended to the
 * target's path (kept as it arrived, percent-encoding and all), the target's own query then the
 * captured one as it arrived (a sender may have signed the URL, as Twilio does), the headers
 * less the hop-by-hop ones, and the exact body bytes (decoded from base64 when they were not
 * UTF-8), so that signatures over the body (Stripe, GitHub) still verify. With `runId`, the run's
 * id is appended to the loop guard header.
 */
export function outgoing(req: CapturedRequest, target: URL, runId?: string): Outgoing {
  // Also hop-by-hop: the headers the Connection header names (RFC 9110 §7.6.1).
  const named = new Set((req.headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (!dropped.has(name) && !named.has(name) && !name.startsWith('proxy-')) headers[name] = value;
  }
  if (runId !== undefined) headers[forwardHeader] = [...forwardedBy(req), runId].join(', ');
  const body = req.body === null ? undefined : bodyBytes(req);
  if (body !== undefined || 'content-length' in req.headers) headers['content-length'] = String(body?.length ?? 0);

  const queries = [target.search.slice(1), rawQueryOf(req)].filter((q) => q !== '');
  const search = queries.length > 0 ? `?${queries.join('&')}` : '';
  const path = `${target.pathname.replace(/\/+$/, '')}${req.path === '/' ? '' : req.path}` || '/';
  return { method: req.method, path: path + search, headers, body };
}

/** The loopback names a URL can give this machine by. */
const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || host === '0.0.0.0' || host === '[::]' || /^127\.\d+\.\d+\.\d+$/.test(host);

/**
 * Whether `target` is the capture URL of `webhookId` on `server` (or a sub-path of it): a
 * forward there captures each request again, a loop. Only the obvious spelling of it; a loop
 * through another name, a proxy or a second `listen` is caught by the loop guard header.
 */
export function isCaptureUrlOf(target: URL, server: URL, webhookId: string): boolean {
  const port = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80');
  const sameHost = target.hostname === server.hostname || (isLoopback(target.hostname) && isLoopback(server.hostname));
  if (!sameHost || port(target) !== port(server)) return false;
  const capture = new URL(`h/${webhookId}`, server).pathname;
  return target.pathname === capture || target.pathname.startsWith(`${capture}/`);
}

export interface Forwarded {
  status: number;
  statusText: string;
  /** The URL the request went to. */
  url: string;
  ms: number;
}

/**
 * `listen --forward`'s send: the request rebuilt for `target` and marked with `runId`, its answer's
 * status once the body has been read (and dropped). node:http rather than fetch: fetch adds and
 * forbids headers of its own.
 */
export function forward(req: CapturedRequest, target: URL, runId: string, timeoutMs = 30_000): Promise<Forwarded> {
  const started = Date.now();
  const out = outgoing(req, target, runId);
  const url = `${target.origin}${out.path}`;
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const request = send(
      { protocol: target.protocol, hostname: target.hostname, port: target.port, method: out.method, path: out.path, headers: out.headers, timeout: timeoutMs },
      (res: IncomingMessage) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', url, ms: Date.now() - started }));
        res.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    request.on('error', reject);
    request.end(out.body);
  });
}
