import { bodyBytes } from './payload.js';
import type { CapturedRequest } from './protocol.js';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) describe the connection to hooky, not the request, and
 * host and content-length are set anew for the target. `expect` goes too: the body is already
 * complete, there is nothing to wait for.
 */
const dropped = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length', 'expect']);

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
 * target's path (kept as it arrived, percent-encoding and all), the target's query then the
 * captured one, the headers less the hop-by-hop ones, and the exact body bytes (decoded from base64
 * when they were not UTF-8), so that signatures over the body (Stripe, GitHub) still verify.
 */
export function outgoing(req: CapturedRequest, target: URL): Outgoing {
  // Also hop-by-hop: the headers the Connection header names (RFC 9110 §7.6.1).
  const named = new Set((req.headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (!dropped.has(name) && !named.has(name) && !name.startsWith('proxy-')) headers[name] = value;
  }
  const body = req.body === null ? undefined : bodyBytes(req);
  if (body !== undefined || 'content-length' in req.headers) headers['content-length'] = String(body?.length ?? 0);

  // The query is rebuilt from the parsed parameters (form-encoded: a space becomes `+`).
  const query = new URLSearchParams(target.search);
  for (const [name, value] of Object.entries(req.queryParams)) {
    for (const v of Array.isArray(value) ? value : [value]) query.append(name, v);
  }
  const search = query.size > 0 ? `?${query}` : '';
  const path = `${target.pathname.replace(/\/+$/, '')}${req.path === '/' ? '' : req.path}` || '/';
  return { method: req.method, path: path + search, headers, body };
}
