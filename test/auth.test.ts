import { connect } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createAuth } from '../src/auth.js';
import { startServer, uniqueId, type TestServer } from './support/server.js';
import { openClient, type TestClient } from './support/ws.js';

const token = 'tok-0123456789abcdef.~+_';

/** The status and JSON body of a refused upgrade; fails the test if the upgrade succeeded. */
async function refused(opening: Promise<TestClient>): Promise<{ status: number; body: any }> {
  try {
    const c = await opening;
    await c.close();
  } catch (e) {
    const { status, body } = e as { status: number; body: string };
    return { status, body: JSON.parse(body) };
  }
  throw new Error('upgrade accepted');
}

// --- The module ---------------------------------------------------------------------------

const unit = suite('auth: createAuth');

unit('without a token every request and upgrade is allowed', () => {
  const auth = createAuth({ apiToken: undefined, allowedOrigins: undefined });
  assert.is(auth.required, false);
  assert.ok(auth.allowsRequest(''));
  assert.ok(auth.allowsUpgrade('', ['hooky.v1']));
  assert.ok(auth.allowsOrigin('https://anywhere.example'));
});

unit('a Bearer token is accepted only when it matches exactly; the scheme is case-insensitive', () => {
  const auth = createAuth({ apiToken: token, allowedOrigins: undefined });
  assert.is(auth.required, true);
  assert.ok(auth.allowsRequest(`Bearer ${token}`));
  assert.ok(auth.allowsRequest(`bearer  ${token} `));
  for (const bad of ['', token, `Bearer`, `Bearer ${token}x`, `Bearer ${token.slice(1)}`, `Basic ${token}`, `Bearer ${token}, Bearer ${token}`]) {
    assert.not.ok(auth.allowsRequest(bad), bad);
  }
});

unit('an upgrade may carry the token as a hooky.token.<token> subprotocol instead of the header', () => {
  const auth = createAuth({ apiToken: token, allowedOrigins: undefined });
  assert.ok(auth.allowsUpgrade('', ['hooky.v1', `hooky.token.${token}`]));
  assert.ok(auth.allowsUpgrade(`Bearer ${token}`, ['hooky.v1']));
  assert.not.ok(auth.allowsUpgrade('', ['hooky.v1']));
  assert.not.ok(auth.allowsUpgrade('', ['hooky.v1', 'hooky.token.wrong-token-0123456789']));
  assert.not.ok(auth.allowsUpgrade('Bearer wrong', ['hooky.v1', token]));
});

unit('origins: listed ones pass whatever their case, others do not, a request without Origin does', () => {
  const auth = createAuth({ apiToken: undefined, allowedOrigins: ['https://app.example.com', 'http://localhost:5173'] });
  assert.ok(auth.allowsOrigin('https://app.example.com'));
  assert.ok(auth.allowsOrigin('HTTPS://APP.EXAMPLE.COM'));
  assert.ok(auth.allowsOrigin('http://localhost:5173'));
  assert.ok(auth.allowsOrigin(''), 'no Origin: not a browser');
  for (const bad of ['https://evil.example', 'http://app.example.com', 'https://app.example.com:444', 'null', 'http://localhost:5174']) {
    assert.not.ok(auth.allowsOrigin(bad), bad);
  }
});

unit.run();

// --- HOOKY_API_TOKEN on a server --------------------------------------------------------

const withToken = suite<{ s: TestServer }>('auth: HOOKY_API_TOKEN', {} as never);
withToken.before(async (ctx) => {
  ctx.s = await startServer({ HOOKY_API_TOKEN: token });
});
withToken.after(async (ctx) => {
  await ctx.s.close();
});

const bearer = { authorization: `Bearer ${token}` };

withToken('the REST API answers 401 unauthorized, with WWW-Authenticate, without the right token', async (ctx) => {
  const id = uniqueId();
  const attempts: [string, string][] = [
    ['POST', '/api/webhooks'],
    ['GET', `/api/webhooks/${id}`],
    ['DELETE', `/api/webhooks/${id}`],
    ['GET', `/api/webhooks/${id}/requests`],
    ['PUT', '/api/webhooks'],
    ['GET', '/api/no-such-route'],
  ];
  for (const [method, path] of attempts) {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: token }]) {
      const res = await fetch(`${ctx.s.url}${path}`, { method, headers, ...(method === 'POST' ? { body: JSON.stringify({ id }) } : {}) });
      assert.is(res.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
      assert.is(res.headers.get('www-authenticate'), 'Bearer realm="hooky"');
      const body = (await res.json()) as { error: string; message: string };
      assert.is(body.error, 'unauthorized');
      assert.type(body.message, 'string');
    }
  }
  // Nothing was created by the refused POSTs.
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`, { headers: bearer })).status, 404);
});

withToken('with the token the REST API works as usual', async (ctx) => {
  const id = uniqueId();
  const created = await fetch(`${ctx.s.url}/api/webhooks`, { method: 'POST', headers: bearer, body: JSON.stringify({ id }) });
  assert.is(created.status, 201);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`, { headers: bearer })).status, 200);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}/requests`, { headers: bearer })).status, 200);
  assert.is((await fetch(`${ctx.s.url}/api/webhooks/${id}`, { method: 'DELETE', headers: bearer })).status, 204);
});

withToken('a refused POST leaves its keep-alive connection usable: the unread body is skipped', async (ctx) => {
  const body = JSON.stringify({ id: uniqueId(), pad: 'x'.repeat(5000) });
  const out = await new Promise<string>((resolve, reject) => {
    const sock = connect(ctx.s.server.port, '127.0.0.1');
    let text = '';
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if ((text.match(/HTTP\/1\.1 /g) ?? []).length === 2 && text.endsWith('{"status":"ok"}')) {
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(text));
    sock.write(`POST /api/webhooks HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n`);
  });
  assert.match(out, /^HTTP\/1\.1 401 /);
  assert.match(out, /HTTP\/1\.1 200 OK[\s\S]*\{"status":"ok"\}$/);
});

withToken('captures, /healthz, /readyz and /metrics stay open', async (ctx) => {
  const id = uniqueId();
  await fetch(`${ctx.s.url}/api/webhooks`, { method: 'POST', headers: bearer, body: JSON.stringify({ id }) });
  // Webhook senders (Stripe, GitHub…) cannot be given hooky's token: capture needs none.
  assert.is((await fetch(`${ctx.s.url}/h/${id}`, { method: 'POST', body: 'x' })).status, 200);
  assert.is((await fetch(`${ctx.s.url}/healthz`)).status, 200);
  assert.is((await fetch(`${ctx.s.url}/readyz`)).status, 200);
  assert.is((await fetch(`${ctx.s.url}/metrics`)).status, 200);
});

withToken('/ws without the token is refused 401 unauthorized, even when the protocol is wrong too', async (ctx) => {
  for (const protocols of [['hooky.v1'], ['graphql-ws'], ['hooky.v1', 'hooky.token.wrong-token-0123456789']]) {
    const { status, body } = await refused(openClient(ctx.s.wsUrl, protocols));
    assert.is(status, 401, protocols.join());
    assert.is(body.error, 'unauthorized');
  }
  const wrong = await refused(openClient(ctx.s.wsUrl, 'hooky.v1', { headers: { authorization: 'Bearer nope-0123456789abcdef' } }));
  assert.is(wrong.status, 401);
});

withToken('/ws accepts the token as Authorization: Bearer (Node clients)', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl, 'hooky.v1', { headers: bearer });
  assert.is(c.ws.protocol, 'hooky.v1');
  await c.next('connected');
  await c.close();
});

withToken('/ws accepts the token as a hooky.token.<token> subprotocol (browsers); the server selects hooky.v1', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl, ['hooky.v1', `hooky.token.${token}`]);
  assert.is(c.ws.protocol, 'hooky.v1');
  await c.next('connected');
  await c.close();
  // The token alone is not a protocol: with it, a client that does not speak hooky.v1 gets 400.
  const { status, body } = await refused(openClient(ctx.s.wsUrl, [`hooky.token.${token}`]));
  assert.is(status, 400);
  assert.is(body.error, 'unsupported_protocol');
});

withToken.run();

// --- HOOKY_ALLOWED_ORIGINS --------------------------------------------------------------

const origins = suite<{ s: TestServer }>('auth: HOOKY_ALLOWED_ORIGINS', {} as never);
origins.before(async (ctx) => {
  ctx.s = await startServer({ HOOKY_ALLOWED_ORIGINS: 'https://app.example.com, http://localhost:5173', HOOKY_API_TOKEN: token });
});
origins.after(async (ctx) => {
  await ctx.s.close();
});

origins('/ws from a listed origin is accepted, from any other refused 403 forbidden_origin', async (ctx) => {
  const ok = await openClient(ctx.s.wsUrl, ['hooky.v1', `hooky.token.${token}`], { origin: 'https://app.example.com' });
  await ok.next('connected');
  await ok.close();
  const { status, body } = await refused(openClient(ctx.s.wsUrl, ['hooky.v1', `hooky.token.${token}`], { origin: 'https://evil.example' }));
  assert.is(status, 403);
  assert.equal(Object.keys(body), ['error', 'message']);
  assert.is(body.error, 'forbidden_origin');
});

origins('a foreign origin is refused before the token is even looked at', async (ctx) => {
  const { status } = await refused(openClient(ctx.s.wsUrl, ['hooky.v1'], { origin: 'https://evil.example' }));
  assert.is(status, 403);
});

origins('a client that sends no Origin (not a browser) is let through to the token check', async (ctx) => {
  const c = await openClient(ctx.s.wsUrl, 'hooky.v1', { headers: bearer });
  await c.next('connected');
  await c.close();
  assert.is((await refused(openClient(ctx.s.wsUrl))).status, 401);
});

origins.run();
