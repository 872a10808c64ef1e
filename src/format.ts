/**
 * How `hooky listen` prints a captured request: one line for a person, or one line of JSON for a
 * program; and the line for a forward's answer.
 */
import type { Forwarded } from './forward.js';
import { rawQueryOf } from './payload.js';
import type { CapturedRequest } from './protocol.js';

/** `14:03:07.123  POST   /orders/42?x=1  1.2 KiB  application/json`, the time local, the query as it arrived. */
export function line(req: CapturedRequest): string {
  const t = new Date(req.timestamp);
  const time = `${t.toTimeString().slice(0, 8)}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  const query = rawQueryOf(req);
  const path = req.path + (query !== '' ? `?${query}` : '');
  return `${time}  ${req.method.padEnd(6)} ${path}  ${size(req.size)}  ${req.headers['content-type'] ?? '-'}`;
}

/** The payload as the server stores and sends it, on one line. */
export const json = (req: CapturedRequest): string => JSON.stringify(req);

/** `→ 202 Accepted POST http://localhost:4000/hook (12 ms)` */
export const forwarded = (req: Pick<CapturedRequest, 'method'>, { status, statusText, url, ms }: Forwarded): string =>
  `→ ${status} ${statusText} ${req.method} ${url} (${ms} ms)`;

/** Bytes as `512 B`, `1.2 KiB`, `3.4 MiB`. */
export const size = (n: number): string => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);
