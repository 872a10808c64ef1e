import { isUtf8 } from 'node:buffer';
import type { CapturedRequest } from './protocol.js';

/** What capture reads synchronously off a uWS request before its first await. */
export interface RequestFacts {
  method: string;
  path: string;
  headers: Record<string, string>;
  rawQuery: string;
  sourceIp: string;
}

/**
 * Builds the payload and its JSON once; the JSON is what is stored and what is published.
 *
 * The JSON is written by hand, in the order of the payload's fields, rather than by
 * `JSON.stringify(payload)`: the same text (test/payload.test.ts holds them equal), ~2 µs less
 * per capture of the ~10 µs this takes for a 1 KB body (most of the rest is escaping the body,
 * which V8 does natively). The id, webhook id, timestamp and encoding are written unquoted:
 * each is hooky's own and holds nothing JSON must escape (a UUID, `webhookIdPattern`, an ISO
 * date, a literal); every other string goes through `JSON.stringify`.
 */
export function buildPayload(id: string, webhookId: string, facts: RequestFacts, body: Buffer, now: Date) {
  const size = body.length;
  const utf8 = isUtf8(body);
  const timestamp = isoOf(now);
  const payload: CapturedRequest = {
    id,
    webhookId,
    method: facts.method,
    path: facts.path,
    headers: facts.headers,
    queryParams: parseQuery(facts.rawQuery),
    rawQuery: facts.rawQuery,
    body: size === 0 ? null : body.toString(utf8 ? 'utf8' : 'base64'),
    bodyEncoding: utf8 ? 'utf8' : 'base64',
    size,
    timestamp,
    sourceIp: facts.sourceIp,
    userAgent: facts.headers['user-agent'] ?? null,
  };
  const q = JSON.stringify;
  const json =
    `{"id":"${id}","webhookId":"${webhookId}","method":${q(payload.method)},"path":${q(payload.path)},` +
    `"headers":${q(payload.headers)},"queryParams":${facts.rawQuery === '' ? '{}' : q(payload.queryParams)},"rawQuery":${q(payload.rawQuery)},` +
    `"body":${payload.body === null ? 'null' : q(payload.body)},"bodyEncoding":"${payload.bodyEncoding}","size":${size},` +
    `"timestamp":"${timestamp}","sourceIp":${q(payload.sourceIp)},"userAgent":${payload.userAgent === null ? 'null' : q(payload.userAgent)}}`;
  return { payload, json };
}

// Captures arriving together share their millisecond: its text is made once (~1.3 µs each).
let isoMs = Number.NaN;
let iso = '';
function isoOf(now: Date): string {
  const ms = now.getTime();
  if (ms !== isoMs) {
    isoMs = ms;
    iso = now.toISOString();
  }
  return iso;
}

/** Form-style decoding (`+` is a space); a name given twice becomes an array, in order. */
export function parseQuery(raw: string): Record<string, string | string[]> {
  // A null prototype keeps a parameter named __proto__ as data.
  const out: Record<string, string | string[]> = Object.create(null);
  if (raw === '') return out;
  for (const [name, value] of new URLSearchParams(raw)) {
    const seen = out[name];
    if (seen === undefined) out[name] = value;
    else if (typeof seen === 'string') out[name] = [seen, value];
    else seen.push(value);
  }
  return out;
}

/** The body back as bytes, exactly as it was received. */
export function bodyBytes(p: Pick<CapturedRequest, 'body' | 'bodyEncoding'>): Buffer {
  return p.body === null ? Buffer.alloc(0) : Buffer.from(p.body, p.bodyEncoding);
}

/**
 * The query as it arrived, without the `?`; for a payload stored before `rawQuery` was kept,
 * rebuilt from `queryParams` (form-encoded: a space comes back as `+`).
 */
export function rawQueryOf(p: Pick<CapturedRequest, 'rawQuery' | 'queryParams'>): string {
  if (p.rawQuery !== undefined) return p.rawQuery;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(p.queryParams)) for (const v of Array.isArray(value) ? value : [value]) query.append(name, v);
  return query.toString();
}
