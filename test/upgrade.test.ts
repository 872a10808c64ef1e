import { connect as tcp } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createAuth } from '../src/auth.js';
import { createMetrics } from '../src/metrics.js';
import { createUpgrade } from '../src/upgrade.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from '../src/uws.js';
import { eventually, metric } from './support/observe.js';
import { startServer, withServer, type TestServer } from './support/server.js';
import { openClient, type TestClient } from './support/ws.js';

// --- The order of the checks, over a fake request and response ------------------------------

const token = 'tok_0123456789abcdef0123456789abcdef';
const goodHeaders = {
  'sec-websocket-version': '13',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'sec-websocket-protocol': 'hooky.v1',
  origin: 'https://ok.example',
  authorization: `Bearer ${token}`,
};

interface Answer {
  status?: string;
  headers: Record<string, string>;
  body?: unknown;
  upgraded?: { userData: unknown; protocol: string };
}

/** Runs the upgrade handler once on these headers with the given state; returns what it answered. */
function handshake(headers: Record<string, string | string[]>, state: { draining?: boolean; connections?: number } = {}) {
  const metrics = createMetrics();
  const upgrade = createUpgrade(
    { maxConnections: 2 },
    {
      auth: createAuth({ apiToken: token, allowedOrigins: ['https://ok.example'] }),
      metrics,
      isDraining: () => state.draining ?? false,
      connections: () => state.connections ?? 0,
      accept: () => ({ accepted: true }),
    },
  );
  const answer: Answer = { headers: {} };
  const res = {
    cork: (cb: () => void) => cb(),
    writeStatus: (s: string) => void (answer.status = s),
    writeHeader: (k: string, v: string) => void (answer.headers[k] = v),
    end: (body: string) => void (answer.body = JSON.parse(body)),
    upgrade: (userData: unknown, _key: string, protocol: string) => void (answer.upgraded = { userData, protocol }),
  } as unknown as HttpResponse;
  // A header sent on several lines is an array here: getHeader reads the first line, as uWS's does.
  const lines = Object.entries(headers).flatMap(([name, v]) => (Array.isArray(v) ? v : [v]).map((value) => [name, value] as const));
  const req = {
    getHeader: (name: string) => lines.find(([n]) => n === name)?.[1] ?? '',
    forEach: (cb: (name: string, value: string) => void) => lines.forEach(([n, v]) => cb(n, v)),
  } as unknown as HttpRequest;
  upgrade(res, req, {} as us_socket_context_t);
  const refusedWith = answer.status === undefined ? undefined : Number(answer.status.slice(0, 3));
  const counted = refusedWith === undefined ? 0 : metrics.rejectedUpgrades.get(refusedWith);
  metrics.close();
  return { ...answer, code: (answer.body as { error?: string } | undefined)?.error, counted };
}

const order = suite('upgrade: the checks, in their documented order');

order('a handshake that passes every check is upgraded with hooky.v1 and the new connection\'s data', () => {
  const a = handshake(goodHeaders);
  assert.is(a.status, undefined);
  assert.equal(a.upgraded, { userData: { accepted: true }, protocol: 'hooky.v1' });
});

order('hooky.v1 is found among the protocols of every Sec-WebSocket-Protocol line, not only the first', () => {
  assert.equal(handshake({ ...goodHeaders, 'sec-websocket-protocol': ['chat', 'graphql-ws, hooky.v1'] }).upgraded?.protocol, 'hooky.v1');
  assert.is(handshake({ ...goodHeaders, 'sec-websocket-protocol': ['chat', 'graphql-ws'] }).code, 'unsupported_protocol');
});

order('each refusal answers its status, code and the table\'s headers, and is counted by status', () => {
  const cases: [string, Record<string, string>, { draining?: boolean; connections?: number }, string, string, Record<string, string>][] = [
    ['draining', goodHeaders, { draining: true }, '503 Service Unavailable', 'draining', { 'retry-after': '1' }],
    ['version', { ...goodHeaders, 'sec-websocket-version': '8' }, {}, '426 Upgrade Required', 'upgrade_required', { 'sec-websocket-version': '13' }],
    ['origin', { ...goodHeaders, origin: 'https://evil.example' }, {}, '403 Forbidden', 'forbidden_origin', {}],
    ['token', { ...goodHeaders, authorization: 'Bearer nope' }, {}, '401 Unauthorized', 'unauthorized', { 'www-authenticate': 'Bearer' }],
    ['protocol', { ...goodHeaders, 'sec-websocket-protocol': 'chat' }, {}, '400 Bad Request', 'unsupported_protocol', {}],
    ['connections', goodHeaders, { connections: 2 }, '503 Service Unavailable', 'too_many_connections', { 'retry-after': '1' }],
  ];
  for (const [what, headers, state, status, code, expected] of cases) {
    const a = handshake(headers, state);
    assert.is(a.status, status, what);
    assert.is(a.code, code, what);
    assert.is(a.upgraded, undefined, what);
    assert.is(a.counted, 1, what);
    for (const [name, value] of Object.entries(expected)) assert.is(a.headers[name]?.split(' ')[0], value, `${what}: ${name}`);
  }
});

order('when several checks fail, the earliest in the order answers: 503 draining, 426, 403, 401, 400, 503 limit', () => {
  // Every check fails; removing the cause of each refusal in turn reveals the next one.
  const worst = { 'sec-websocket-version': '8', origin: 'https://evil.example', authorization: '', 'sec-websocket-protocol': 'chat' };
  const steps: [Record<string, string>, { draining?: boolean; connections?: number }, string][] = [
    [worst, { draining: true, connections: 2 }, 'draining'],
    [worst, { connections: 2 }, 'upgrade_required'],
    [{ ...worst, 'sec-websocket-version': '13' }, { connections: 2 }, 'forbidden_origin'],
    [{ ...worst, 'sec-websocket-version': '13', origin: 'https://ok.example' }, { connections: 2 }, 'unauthorized'],
    [{ ...goodHeaders, 'sec-websocket-protocol': 'chat' }, { connections: 2 }, 'unsupported_protocol'],
    [goodHeaders, { connections: 2 }, 'too_many_connections'],
  ];
  for (const [headers, state, code] of steps) assert.is(handshake(headers, state).code, code);
});

order.run();

// --- Refusals over the wire ---------------------------------------------------------------

/** The HTTP status, body and headers of a refused upgrade; fails the test if the upgrade succeeded. */
async function refused(opening: Promise<TestClient>): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  try {
    const c = await opening;
    await c.close();
  } catch (e) {
    return e as { status: number; body: string; headers: Record<string, string> };
  }
  throw new Error('upgrade accepted');
}


const wire = withServer('upgrade: refusals over the wire', { HOOKY_MAX_CONNECTIONS: '3' });

wire('connection with an unsupported protocol is refused with 400 and the error', async (ctx) => {
  const err = await refused(openClient(ctx.s.wsUrl, ['graphql-ws', 'chat']));
  assert.is(err.status, 400);
  const body = JSON.parse(err.body);
  assert.is(body.error, 'unsupported_protocol');
  assert.equal(body.supported, ['hooky.v1']);
  assert.type(body.message, 'string');
});

wire('connection without any subprotocol is refused with 400 unsupported_protocol', async (ctx) => {
  const err = await refused(openClient(ctx.s.wsUrl, []));
  assert.is(err.status, 400);
  assert.is(JSON.parse(err.body).error, 'unsupported_protocol');
});

/**
 * A handshake written by hand (what a WebSocket client will not send) with these header lines
 * after the key; resolves with what came back up to `until`.
 */
function rawHandshake(port: number, lines: string, until: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tcp(port, '127.0.0.1', () =>
      sock.write(`GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${lines}\r\n`),
    );
    let out = '';
    sock.on('data', (d) => {
      out += d;
      if (out.includes(until)) {
        sock.destroy();
        resolve(out);
      }
    });
    sock.on('error', reject);
  });
}

wire('a handshake that offers hooky.v1 on a second Sec-WebSocket-Protocol line is upgraded with it', async (ctx) => {
  const head = await rawHandshake(ctx.s.server.port, 'sec-websocket-version: 13\r\nsec-websocket-protocol: chat\r\nsec-websocket-protocol: hooky.v1\r\n', '\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.match(head, /\r\nsec-websocket-protocol: hooky\.v1\r\n/i);
});

wire('a handshake for a WebSocket version other than 13 is refused 426, naming version 13', async (ctx) => {
  for (const version of ['8', '', 'x']) {
    const head = await rawHandshake(ctx.s.server.port, `sec-websocket-version: ${version}\r\nsec-websocket-protocol: hooky.v1\r\n`, '}');
    assert.match(head, /^HTTP\/1\.1 426 Upgrade Required\r\n/, JSON.stringify(version));
    assert.match(head, /\r\nsec-websocket-version: 13\r\n/i);
    assert.match(head, /"error":"upgrade_required"/);
  }
});

wire('a plain GET /ws answers 426 upgrade_required', async (ctx) => {
  const res = await fetch(`${ctx.s.url}/ws`);
  assert.is(res.status, 426);
  assert.is(((await res.json()) as { error: string }).error, 'upgrade_required');
});

wire('upgrades past HOOKY_MAX_CONNECTIONS are refused 503 too_many_connections with Retry-After', async (ctx) => {
  const cs = await Promise.all([1, 2, 3].map(() => openClient(ctx.s.wsUrl)));
  ctx.clients.push(...cs);
  const err = await refused(openClient(ctx.s.wsUrl));
  assert.is(err.status, 503);
  assert.is(err.headers['retry-after'], '1');
  const body = JSON.parse(err.body);
  assert.equal(Object.keys(body), ['error', 'message']);
  assert.is(body.error, 'too_many_connections');
  assert.is(await metric(ctx.s.url, 'hooky_websocket_rejected_upgrades_total{status="503"}'), 1);
  // A freed slot can be taken again.
  await cs.pop()!.close();
  await eventually(async () => (await metric(ctx.s.url, 'hooky_websocket_connections')) === 2);
  const again = await openClient(ctx.s.wsUrl);
  ctx.clients.push(again);
  await again.next('connected');
});

wire.run();
