import type { CapturedRequest } from '../protocol.js';

const encoder = new TextEncoder();

/** The body exactly as received: the UTF-8 text re-encoded, or the base64 decoded. */
export function bodyBytes(req: CapturedRequest): Uint8Array {
  if (req.body === null) return new Uint8Array(0);
  if (req.bodyEncoding === 'utf8') return encoder.encode(req.body);
  return fromBase64(req.body);
}

export function fromBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function toBase64(bytes: Uint8Array): string {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Text when the bytes are valid UTF-8, else undefined. */
export function utf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** One hex-dump line per 16 bytes: offset, bytes, printable ASCII. */
export function hexLines(bytes: Uint8Array, from: number, to: number): string {
  let out = '';
  for (let off = from; off < Math.min(to, bytes.length); off += 16) {
    let hex = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      const b = bytes[off + i];
      if (b === undefined) {
        hex += '   ';
        continue;
      }
      hex += b.toString(16).padStart(2, '0') + (i === 7 ? '  ' : ' ');
      ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
    }
    out += `${off.toString(16).padStart(8, '0')}  ${hex.padEnd(49)} ${ascii}\n`;
  }
  return out;
}

/**
 * The query string as sent: `rawQuery`, byte for byte (its order, its escapes and a bare `flag`
 * are what a signature over the URL covers, and what Copy as curl must send again); rebuilt from
 * the decoded parameters only for a request stored before hooky kept it.
 */
export function queryString(req: CapturedRequest): string {
  if (req.rawQuery !== undefined) return req.rawQuery === '' ? '' : `?${req.rawQuery}`;
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(req.queryParams)) for (const v of Array.isArray(value) ? value : [value]) q.append(name, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const header = (req: CapturedRequest, name: string): string | undefined => req.headers[name];

/** The media type, lower case, without parameters. */
export const mediaType = (req: CapturedRequest): string => (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
