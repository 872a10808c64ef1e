import { STATUS_CODES } from 'node:http';
import type { Hold } from './budget.js';
import { HttpError, httpErrors, type HttpErrorCode } from './errors.js';
import type { HttpResponse } from './uws.js';

/**
 * The rules uWS imposes on every HTTP handler, in one place:
 * - a handler that does not answer before it returns must register onAborted first, and must not
 *   touch `res` after the client went away;
 * - `req` lives only until the handler returns: copy what you need out of it synchronously;
 * - every write made after an await is corked, so status, headers and body leave in one syscall;
 * - a body arrives in chunks whose ArrayBuffers are neutered after the callback: copy them.
 */
export interface Exchange {
  readonly res: HttpResponse;
  /** The client went away, or we already answered: `res` must not be used. */
  done: boolean;
  /** A HEAD request: answered with the headers a GET would get, and no body. */
  head?: boolean;
  /** Runs if the client goes away before the answer is complete (also once `done` is set by us). */
  onAbort?: (() => void) | undefined;
}

export function exchange(res: HttpResponse, onAbort?: () => void): Exchange {
  const ex: Exchange = { res, done: false, onAbort };
  res.onAborted(() => {
    ex.done = true;
    ex.onAbort?.();
  });
  return ex;
}

const statusLines = new Map<number, string>();
export function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
    statusLines.set(status, line);
  }
  return line;
}

export type Headers = Readonly<Record<string, string>>;
const jsonType: Headers = { 'content-type': 'application/json' };

/** Answers once; later calls, and calls after the client went away, do nothing. */
export function send(ex: Exchange, status: number, body: string | Uint8Array, headers: Headers = jsonType, close = false): void {
  if (ex.done) return;
  ex.done = true;
  ex.res.cork(() => {
    ex.res.writeStatus(statusLine(status));
    for (const name in headers) ex.res.writeHeader(name, headers[name]!);
    // RFC 9110 §15.3.5, §15.4.5: a 204 or 304 has no body and a 204 no Content-Length, so
    // neither is written (uWS's endWithoutBody() without a length writes none). A 205 has no
    // body either, but a client reads a response without a length until the close (RFC 9112
    // §6.3), so it says Content-Length: 0.
    if (status === 204 || status === 304) ex.res.endWithoutBody();
    else if (status === 205) ex.res.endWithoutBody(0, close);
    // uWS would send the body even for HEAD, which breaks the next response on the connection.
    else if (ex.head) ex.res.endWithoutBody(typeof body === 'string' ? Buffer.byteLength(body) : body.length, close);
    else ex.res.end(body, close);
  });
}


export function sendJson(ex: Exchange, status: number, value: unknown, headers?: Headers): void {
  send(ex, status, JSON.stringify(value), headers ? { ...jsonType, ...headers } : jsonType);
}

export function sendEmpty(ex: Exchange, status: number): void {
  send(ex, status, '', noHeaders);
}

const noHeaders: Headers = {};

/** The contract's error body `{"error", "message"}`, with any extra fields after them. */
function errorBody(code: HttpErrorCode, message: string = httpErrors[code].message, extra?: Record<string, unknown>): string {
  return JSON.stringify({ error: code, message, ...extra });
}

/** The one way an HttpError is answered: its status, the headers errors.ts gives its code, its JSON body. */
export function sendError(ex: Exchange, err: HttpError, close = false): void {
  send(ex, err.status, errorBody(err.code, err.message, err.extra), { ...jsonType, ...err.headers }, close);
}

/**
 * Streams the body into one Buffer, enforcing `limit` as the bytes arrive rather than after.
 * Past the limit it answers 413 at once and closes the connection, so the rest is never read.
 *
 * With a `hold` on a server-wide budget, the body's bytes are taken from it before they are held:
 * a Content-Length at once, before a byte of the body is read; a body without one chunk by chunk.
 * When the budget refuses, it answers 503 `overloaded` and closes the connection. The hold is
 * given back once `done` has returned or the answer is an error; the caller gives it back when
 * the client goes away (exchange's onAbort).
 *
 * Both refusals (413, 503) go through `refuse`, which answers them and closes the connection;
 * the capture route also counts them there.
 */
export function readBody(
  ex: Exchange,
  declaredLength: string,
  limit: number,
  done: (body: Buffer) => void,
  hold?: Hold,
  refuse: (ex: Exchange, err: HttpError) => void = refuseBody,
): void {
  const declared = declaredLength === '' ? -1 : Number(declaredLength);
  if (declared > limit) return refuse(ex, tooLarge(limit));
  if (hold !== undefined && declared > 0 && !hold.take(declared)) return overloaded(ex, hold, refuse);
  // With a Content-Length (the usual case) the body is copied once into a buffer of its size.
  // Without a hold only up to preallocMax: a client must not make us reserve 10 MiB with a header
  // alone. With one, those bytes are already counted against the budget; and one buffer of the
  // body's size is one allocation the allocator gives back to the system whole when it is freed,
  // where a list of chunks fragments its heap.
  let buf = declared > 0 && (declared <= preallocMax || hold !== undefined) ? Buffer.allocUnsafe(declared) : undefined;
  let chunks: Buffer[] | undefined;
  let size = 0;
  ex.res.onData((ab, isLast) => {
    if (ex.done) return;
    const chunk = new Uint8Array(ab);
    if (size + chunk.length > limit) {
      hold?.release();
      return refuse(ex, tooLarge(limit));
    }
    if (hold !== undefined && size + chunk.length > hold.bytes && !hold.take(size + chunk.length - hold.bytes)) return overloaded(ex, hold, refuse);
    if (buf !== undefined && size + chunk.length <= buf.length) {
      buf.set(chunk, size);
    } else {
      chunks ??= buf === undefined ? [] : [buf.subarray(0, size)];
      buf = undefined;
      chunks.push(Buffer.from(chunk));
    }
    size += chunk.length;
    if (!isLast) return;
    if (chunks !== undefined) done(Buffer.concat(chunks, size));
    else done(buf === undefined ? Buffer.alloc(0) : buf.subarray(0, size));
    hold?.release();
  });
}

function overloaded(ex: Exchange, hold: Hold, refuse: (ex: Exchange, err: HttpError) => void) {
  hold.release();
  refuse(ex, new HttpError('overloaded', 'Too many request bodies are being received at once; retry later'));
}

/** readBody's refusal unless the caller has its own: the answer, and the connection closed. */
const refuseBody = (ex: Exchange, err: HttpError) => sendError(ex, err, true);

/**
 * Answers with a body too large to hand to uWS at once. `end` would make uWS copy whatever the
 * socket does not take now into a buffer of its own, with no limit and out of our sight; `tryEnd`
 * writes only what the socket takes, and `onWritable` sends the rest as the client reads. The
 * bytes still to send stay in `body`, which the caller accounts for until `finished` runs: once,
 * when the last byte is written or the client went away.
 */
export function sendStreamed(ex: Exchange, status: number, body: Buffer, headers: Headers, finished: () => void): void {
  if (ex.done) return finished();
  ex.done = true;
  const { res } = ex;
  let over = false;
  const finish = () => {
    if (over) return;
    over = true;
    finished();
  };
  const onAbort = ex.onAbort;
  ex.onAbort = () => {
    onAbort?.();
    finish();
  };
  res.cork(() => {
    res.writeStatus(statusLine(status));
    for (const name in headers) res.writeHeader(name, headers[name]!);
    const start = res.getWriteOffset();
    const [ok, done] = res.tryEnd(body, body.length);
    if (done) return finish();
    if (ok) return;
    res.onWritable((offset) => {
      const [more, ended] = res.tryEnd(body.subarray(offset - start), body.length);
      if (ended) finish();
      return more;
    });
  });
}

const preallocMax = 1024 * 1024;

/**
 * The named parameters of a raw query string, an empty value counting as absent (as an empty
 * search box sends it). A name given twice is 400 `invalid_request`: which one was meant is a guess.
 */
export function queryParams<N extends string>(rawQuery: string, names: readonly N[]): Partial<Record<N, string>> {
  const params = new URLSearchParams(rawQuery);
  const given: Partial<Record<N, string>> = {};
  for (const name of names) {
    const values = params.getAll(name).filter((s) => s !== '');
    if (values.length > 1) throw new HttpError('invalid_request', `${name} may be given once`);
    if (values.length === 1) given[name] = values[0]!;
  }
  return given;
}

const tooLarge = (limit: number) => new HttpError('payload_too_large', `The body is larger than the limit of ${limit} bytes`, { limit });

/**
 * The peer's address as text; an IPv4 client on a dual-stack socket loses its `::ffff:` prefix.
 * IPv4 is printed from uWS's binary address: that is every capture of an IPv4 sender, and the
 * text route (a copy into a Buffer, then a decode) cost ~4 µs of the ~100 µs of a capture.
 */
export function remoteAddress(res: HttpResponse): string {
  const b = new Uint8Array(res.getRemoteAddress());
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length === 16 && isV4Mapped(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return Buffer.from(res.getRemoteAddressAsText()).toString();
}

/** ::ffff:a.b.c.d: ten zero bytes, then two 0xff. */
function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}
