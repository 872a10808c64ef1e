import { createServer } from 'node:http';
import * as assert from 'uvu/assert';
import { createWebhook, reason, unauthorized } from '../src/rest.js';
import { freePort, withCleanup } from './support/suite.js';
import { startServer, uniqueId } from './support/server.js';

const token = 'rest-test-token-0123456789abcdef';

const create = withCleanup('createWebhook');

create('createWebhook answers the capture URL; a taken id answers the server\'s code and message', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const base = new URL(`${server.url}/`);
  const id = uniqueId('rest');
  assert.equal(await createWebhook(base, undefined, id), { url: `http://localhost:${server.server.port}/h/${id}` });
  const taken = await createWebhook(base, undefined, id);
  assert.ok('error' in taken);
  assert.match(taken.error, /^could not create the webhook: HTTP 409 conflict: /);
  const random = await createWebhook(base, undefined, undefined);
  assert.ok('url' in random && /\/h\/[A-Za-z0-9_-]+$/.test(random.url), JSON.stringify(random));
});

create('createWebhook sends the token; none or a wrong one answers what to do, without the token', async (ctx) => {
  const server = await startServer({ HOOKY_API_TOKEN: token });
  ctx.cleanup.push(() => server.close());
  const base = new URL(`${server.url}/`);
  assert.ok('url' in (await createWebhook(base, token, undefined)));
  assert.equal(await createWebhook(base, undefined, undefined), { error: unauthorized(base, undefined) });
  const wrong = await createWebhook(base, 'wrong-token-0123456789', undefined);
  assert.equal(wrong, { error: `${base.origin} did not accept the API token (HTTP 401): check --token or HOOKY_API_TOKEN` });
  assert.is(unauthorized(base, undefined), `${base.origin} requires an API token: pass --token or set HOOKY_API_TOKEN`);
});

create('createWebhook shows an answer that is not JSON as text, and an unreachable server with the socket error', async (ctx) => {
  const proxy = createServer((_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>502 Bad Gateway</h1>'));
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  ctx.cleanup.push(() => new Promise((r) => proxy.close(r)));
  const { port } = proxy.address() as { port: number };
  assert.equal(await createWebhook(new URL(`http://127.0.0.1:${port}/`), undefined, undefined), { error: 'could not create the webhook: HTTP 502: <h1>502 Bad Gateway</h1>' });
  const down = await freePort();
  const gone = await createWebhook(new URL(`http://127.0.0.1:${down}/`), undefined, undefined);
  assert.ok('error' in gone);
  assert.match(gone.error, `cannot reach http://127.0.0.1:${down}: `);
  assert.match(gone.error, 'ECONNREFUSED');
});

create('reason prefers the cause fetch hides, then the message, then the code', () => {
  assert.is(reason(new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:1' } })), 'connect ECONNREFUSED 127.0.0.1:1');
  assert.is(reason(Object.assign(new Error(''), { code: 'EPIPE' })), 'EPIPE');
  assert.is(reason('plain'), 'plain');
});

create.run();
