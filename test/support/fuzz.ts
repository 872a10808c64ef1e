/**
 * Seeded generators of bad input for test/fuzz.test.ts: WebSocket frames and raw HTTP requests.
 * The same seed gives the same inputs, so a failure names the seed that reproduces it.
 */

/** sfc32: a small, fast, seedable PRNG (not for secrets; reproducibility is the point). */
export function createRng(seed: number) {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = () => {
    a |= 0;
    b |= 0;
    c |= 0;
    d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  const rng = {
    next,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
    chance: (p: number) => next() < p,
    bytes(n: number): Buffer {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
      return out;
    },
    /** Text from a mix of ASCII, controls, Latin-1, CJK, emoji and lone surrogates. */
    unicode(n: number): string {
      let s = '';
      for (let i = 0; i < n; i++) {
        const kind = rng.int(0, 9);
        if (kind < 4) s += String.fromCharCode(rng.int(0x20, 0x7e));
        else if (kind === 4) s += String.fromCharCode(rng.int(0, 0x1f));
        else if (kind === 5) s += String.fromCharCode(rng.int(0x80, 0xff));
        else if (kind === 6) s += String.fromCharCode(rng.int(0x4e00, 0x9fff));
        else if (kind === 7) s += String.fromCodePoint(rng.int(0x1f300, 0x1faff));
        else if (kind === 8) s += String.fromCharCode(rng.int(0xd800, 0xdfff));
        else s += rng.pick(['"', '\\', '{', '}', '[', ']', ':', ',', '\u2028', '\ufeff', '\u0000']);
      }
      return s;
    },
  };
  return rng;
}

export type Rng = ReturnType<typeof createRng>;

// --- WebSocket frames -----------------------------------------------------------------------

/**
 * What the server must do with a frame: answer it with exactly one reply (`error` with one of
 * `codes`, or the named event), or close the connection with `close` (1009 over the payload
 * limit, 1006 past uWS's ceiling or for text that is not UTF-8).
 */
export type WsExpect = { reply: readonly string[] } | { close: number };

export interface WsCase {
  kind: string;
  payload: string | Buffer;
  binary: boolean;
  expect: WsExpect;
}

const anyError = ['error'];

export interface WsTargets {
  /** A webhook that exists: joining it succeeds. */
  existing: string;
  maxPayload: number;
  /** uWS's own frame ceiling: past it the connection is cut without a close frame. */
  ceiling: number;
}

/** Values of every JSON type, some of them odd, for "wrong type" fields. */
function oddValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(0, depth > 2 ? 7 : 9)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -1, 1e308, -1e-308, 2 ** 53 + 1, 0.1, 42]);
    case 3:
      return rng.unicode(rng.int(0, 40));
    case 4:
      return 'x'.repeat(rng.int(60, 3000));
    case 5:
      return '';
    case 6:
      return rng.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'join', 'ping']);
    case 7:
      return rng.pick(['ok', 'a-b_c', 'A'.repeat(64)]);
    case 8:
      return Array.from({ length: rng.int(0, 5) }, () => oddValue(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(0, 4); i > 0; i--) o[rng.pick(['event', 'data', 'ref', 'webhookId', 'since', '__proto__', rng.unicode(5)])] = oddValue(rng, depth + 1);
      return o;
    }
  }
}

const validId = (rng: Rng) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
  let s = alphabet[rng.int(0, 61)]!;
  for (let i = rng.int(0, 30); i > 0; i--) s += alphabet[rng.int(0, 63)]!;
  return s;
};

export function wsCase(rng: Rng, t: WsTargets): WsCase {
  const text = (kind: string, payload: string, reply: readonly string[] = anyError): WsCase => ({ kind, payload, binary: false, expect: { reply } });
  const roll = rng.next();
  // Rare: frames that end the connection, each costs a reconnect.
  if (roll < 0.002) {
    const size = rng.chance(0.5) ? rng.int(t.maxPayload + 1, t.ceiling) : rng.int(t.ceiling + 1, t.ceiling + 64 * 1024);
    return { kind: 'oversized', payload: 'x'.repeat(size), binary: rng.chance(0.5), expect: { close: size > t.ceiling ? 1006 : 1009 } };
  }
  if (roll < 0.004) {
    // Random bytes sent as text: almost never UTF-8, which uWS answers by closing.
    const bytes = Buffer.concat([rng.bytes(rng.int(1, 200)), Buffer.from([0xff])]);
    return { kind: 'text not UTF-8', payload: bytes, binary: false, expect: { close: 1006 } };
  }
  switch (rng.int(0, 13)) {
    case 0:
      return { kind: 'random bytes (binary)', payload: rng.bytes(rng.int(0, 2000)), binary: true, expect: { reply: anyError } };
    case 1:
      return text('unicode noise', rng.unicode(rng.int(0, 500)));
    case 2: {
      const whole = JSON.stringify({ event: 'join', data: { webhookId: validId(rng), since: '0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b' }, ref: rng.int(0, 1e6) });
      return text('truncated JSON', whole.slice(0, rng.int(0, whole.length - 1)));
    }
    case 3: {
      const open = rng.chance(0.5) ? '[' : '{"a":';
      const close = open === '[' ? ']' : '}';
      const depth = rng.int(100, Math.floor((t.maxPayload - 40) / (open.length + close.length)));
      const nested = open.repeat(depth) + (rng.chance(0.5) ? close.repeat(depth) : '');
      return text('deeply nested JSON', rng.chance(0.5) ? nested : `{"event":"join","data":${nested}}`);
    }
    case 4:
      // Odd values now and then make a valid frame (a ping, a join of a webhook named "ok").
      return text('wrong types', JSON.stringify({ event: rng.pick(['join', 'leave', 'ping']), data: oddValue(rng), ref: oddValue(rng) }), [
        'error',
        'pong',
        'joined',
        'left',
      ]);
    case 5:
      return text('wrong event type', JSON.stringify({ event: oddValue(rng), data: {} }), ['error', 'pong']);
    case 6:
      return text('overlong ids', JSON.stringify({ event: rng.pick(['join', 'leave']), data: { webhookId: validId(rng) + 'x'.repeat(rng.int(64, 5000)) } }));
    case 7:
      return text('unknown event', JSON.stringify({ event: rng.unicode(rng.int(1, 200)), data: oddValue(rng) }));
    case 8:
      // Mostly not an object; a random object may still make a valid ping or join.
      return text('not an object', JSON.stringify(oddValue(rng)).slice(0, t.maxPayload), ['error', 'pong', 'joined', 'left']);
    case 9:
      return text(
        'prototype keys',
        rng.pick([
          '{"__proto__":{"event":"ping"},"event":"join"}',
          '{"event":"join","data":{"__proto__":{"webhookId":"x"}}}',
          '{"event":"constructor","data":{}}',
          '{"event":"__proto__"}',
          '{"event":"join","data":{"webhookId":"ok","constructor":{"prototype":{"polluted":1}}}}',
        ]),
        ['error'],
      );
    case 10: {
      // Valid frames for webhooks that do not exist: a lookup, then WEBHOOK_NOT_FOUND.
      const ref = rng.chance(0.5) ? rng.int(0, 1e9) : rng.unicode(rng.int(0, 20));
      return text('join unknown webhook', JSON.stringify({ event: 'join', data: { webhookId: validId(rng) }, ref }), ['error']);
    }
    case 11:
      return text('ping', JSON.stringify({ event: 'ping', data: oddValue(rng) }), ['pong']);
    case 12:
      return text('join/leave existing', JSON.stringify({ event: rng.pick(['join', 'leave']), data: { webhookId: t.existing } }), ['joined', 'left']);
    default:
      return text('many keys', JSON.stringify(Object.fromEntries(Array.from({ length: rng.int(1, 500) }, (_, i) => [`k${i}`, i]))));
  }
}

// --- Raw HTTP requests ----------------------------------------------------------------------

export interface HttpCase {
  kind: string;
  bytes: Buffer;
  /** The request may be incomplete as far as the parser can tell: no answer is acceptable. */
  mayWait: boolean;
  /** A capture of this existing webhook: a 200 is acceptable (and must be stored). */
  capture: boolean;
}

export interface HttpTargets {
  existing: string;
  missing: string;
}

const crlf = '\r\n';

export function httpCase(rng: Rng, t: HttpTargets): HttpCase {
  const capture = rng.chance(0.2);
  const path = capture
    ? `/h/${t.existing}${rng.pick(['', '/x', '/a/b?c=d'])}`
    : rng.pick([`/h/${t.missing}`, '/api/webhooks', `/api/webhooks/${t.missing}`, `/api/webhooks/${t.missing}/requests`, '/ws', '/metrics', '/nope', '/h/']);
  const method = rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
  const body = rng.chance(0.5) ? rng.unicode(rng.int(0, 300)) : '';
  const bodyBytes = Buffer.from(body);
  const base = (head: string, payload: Buffer = bodyBytes) => Buffer.concat([Buffer.from(head, 'latin1'), payload]);
  const ok = (kind: string, bytes: Buffer, mayWait = false): HttpCase => ({ kind, bytes, mayWait, capture });
  switch (rng.int(0, 9)) {
    case 0: {
      const bad = rng.pick([
        rng.unicode(rng.int(1, 20)).replace(/[\r\n]/g, ''),
        'X'.repeat(rng.int(10, 2000)),
        'get',
        'PROPFIND',
        'BREW',
        '',
        'G E T',
        'GET\t',
        rng.bytes(rng.int(1, 10)).toString('latin1').replace(/[\r\n ]/g, ''),
      ]);
      return ok('bad method', base(`${bad} ${path} HTTP/1.1${crlf}host: x${crlf}content-length: ${bodyBytes.length}${crlf}${crlf}`), true);
    }
    case 1: {
      const line = rng.pick([
        `${method} ${path}`,
        `${method} ${path} HTTP/2.0`,
        `${method} ${path} HTTP/1.2`,
        `${method} ${path} HTTP/1.1 extra`,
        `${method} http://127.0.0.1${path} HTTP/1.1`,
        `${method} ${path}/${rng.unicode(20).replace(/[\r\n]/g, '')} HTTP/1.1`,
        `${method} ${path}?${'q'.repeat(rng.int(1000, 60000))} HTTP/1.1`,
        `${method}  ${path}  HTTP/1.1`,
        `${method} HTTP/1.1`,
        `${method} * HTTP/1.1`,
      ]);
      return ok('bad request line', base(`${line}${crlf}host: x${crlf}content-length: ${bodyBytes.length}${crlf}${crlf}`), true);
    }
    case 2: {
      const n = rng.pick([rng.int(1, 47), rng.int(48, 400), rng.int(400, 3000)]);
      let headers = '';
      for (let i = 0; i < n; i++) headers += `x-flood-${i}: ${'v'.repeat(rng.int(0, 20))}${crlf}`;
      return ok('header flood (count)', base(`${method} ${path} HTTP/1.1${crlf}host: x${crlf}${headers}content-length: ${bodyBytes.length}${crlf}${crlf}`), n >= 46);
    }
    case 3: {
      const size = rng.pick([rng.int(1000, 20_000), rng.int(20_000, 200_000), rng.int(200_000, 1_000_000)]);
      return ok('header flood (size)', base(`${method} ${path} HTTP/1.1${crlf}host: x${crlf}x-big: ${'a'.repeat(size)}${crlf}content-length: ${bodyBytes.length}${crlf}${crlf}`), true);
    }
    case 4: {
      const header = rng.pick([
        `bad header${crlf}`,
        `: no-name${crlf}`,
        `x-fold: a${crlf} continued${crlf}`,
        `x-ctl: ${String.fromCharCode(rng.int(0, 31))}${crlf}`,
        `x-nul\u0000: v${crlf}`,
        `host: second${crlf}`,
        `x-utf8: ${rng.unicode(30).replace(/[\r\n]/g, '')}${crlf}`,
        `${'n'.repeat(rng.int(100, 5000))}: v${crlf}`,
      ]);
      return ok('malformed header', base(`${method} ${path} HTTP/1.1${crlf}host: x${crlf}${header}content-length: ${bodyBytes.length}${crlf}${crlf}`), true);
    }
    case 5: {
      const len = rng.pick(['-1', 'abc', '0x10', '1e3', ' 5', '99999999999999999999', '', '5, 7', String(bodyBytes.length + rng.int(1, 100)), '18446744073709551616']);
      const dup = rng.chance(0.2) ? `content-length: ${rng.int(0, 10)}${crlf}` : '';
      return ok('bad content-length', base(`POST ${path} HTTP/1.1${crlf}host: x${crlf}content-length: ${len}${crlf}${dup}${crlf}`), true);
    }
    case 6: {
      const chunks = rng.pick([
        `zz${crlf}hello${crlf}0${crlf}${crlf}`,
        `5${crlf}hello0${crlf}${crlf}`,
        `ffffffffffffffffff${crlf}x${crlf}`,
        `5;${rng.unicode(10).replace(/[\r\n]/g, '')}${crlf}hello${crlf}0${crlf}${crlf}`,
        `-1${crlf}x${crlf}0${crlf}${crlf}`,
        `3${crlf}${rng.bytes(3).toString('latin1')}${crlf}0${crlf}x-trailer: ${'t'.repeat(rng.int(0, 5000))}${crlf}${crlf}`,
        `100${crlf}short${crlf}`,
        rng.bytes(rng.int(1, 200)).toString('latin1'),
      ]);
      const te = rng.pick(['chunked', 'gzip, chunked', 'chunked, chunked', 'identity', 'CHUNKED', 'chunked\t']);
      const cl = rng.chance(0.3) ? `content-length: 5${crlf}` : '';
      return ok('chunked garbage', base(`POST ${path} HTTP/1.1${crlf}host: x${crlf}transfer-encoding: ${te}${crlf}${cl}${crlf}${chunks}`, Buffer.alloc(0)), true);
    }
    case 7:
      return ok('random bytes', rng.bytes(rng.int(1, 3000)), true);
    case 8: {
      const key = rng.pick(['', 'short', 'dGhlIHNhbXBsZSBub25jZQ==', rng.unicode(24)]);
      const version = rng.pick(['13', '8', '', 'x']);
      return ok(
        'bad upgrade',
        base(`GET /ws HTTP/1.1${crlf}host: x${crlf}upgrade: websocket${crlf}connection: Upgrade${crlf}sec-websocket-key: ${key}${crlf}sec-websocket-version: ${version}${crlf}sec-websocket-protocol: ${rng.pick(['hooky.v1', 'x', ''])}${crlf}${crlf}`, Buffer.alloc(0)),
        true,
      );
    }
    default: {
      // A valid request, then garbage on the same connection: the first must still be answered.
      const first = `${method === 'HEAD' ? 'GET' : method} ${path} HTTP/1.1${crlf}host: x${crlf}content-length: ${bodyBytes.length}${crlf}${crlf}`;
      return ok('pipelined garbage', Buffer.concat([base(first), rng.bytes(rng.int(1, 500))]), false);
    }
  }
}
