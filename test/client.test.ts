/** The SDK's public API: createClient's URL handling, join and leave, and the browser bundle. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { withCleanup } from './support/suite.js';
import { createClient, HookyError, toWsUrl } from '../src/client/index.js';
import { startServer, uniqueId } from './support/server.js';
import { capture, newWebhook, record, sleep, until } from './support/client.js';

const urls = suite('server URL');

urls('toWsUrl: an http(s) URL is the base /ws hangs off; a ws URL is kept', () => {
  assert.is(toWsUrl('http://localhost:3000'), 'ws://localhost:3000/ws');
  assert.is(toWsUrl('https://hooks.example.com/'), 'wss://hooks.example.com/ws');
  assert.is(toWsUrl('https://example.com/hooky/'), 'wss://example.com/hooky/ws');
  assert.is(toWsUrl('https://example.com/hooky'), 'wss://example.com/hooky/ws');
  assert.is(toWsUrl('ws://127.0.0.1:9'), 'ws://127.0.0.1:9/ws');
  assert.is(toWsUrl('ws://127.0.0.1:9/custom/socket'), 'ws://127.0.0.1:9/custom/socket');
});

urls.run();

const rooms = withCleanup('join and leave');

rooms('join of an unknown webhook rejects with WEBHOOK_NOT_FOUND and emits the error', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const client = createClient(server.wsUrl);
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  const missing = uniqueId('missing');
  const err = await client.join(missing).then(
    () => assert.unreachable('joined') as never,
    (e: unknown) => e,
  );
  assert.instance(err, HookyError);
  assert.is((err as HookyError).code, 'WEBHOOK_NOT_FOUND');
  assert.is((err as HookyError).message, 'Webhook not found');
  assert.equal(rec.of('error'), [{ code: 'WEBHOOK_NOT_FOUND', message: 'Webhook not found', webhookId: missing }]);
});

rooms('leave resolves on left, and the room is no longer followed', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const client = createClient(server.wsUrl);
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  const id = await newWebhook(server.url);
  assert.equal(await client.join(id), { webhookId: id, room: `webhook:${id}`, last: null });
  await capture(server.url, id);
  await until(() => rec.of('new-request').length === 1, 'the request before leaving');
  assert.equal(await client.leave(id), { webhookId: id, room: `webhook:${id}` });
  assert.equal(rec.of('left'), [{ webhookId: id, room: `webhook:${id}` }]);
  await capture(server.url, id);
  await sleep(200);
  assert.is(rec.of('new-request').length, 1);
});

rooms.run();

// --- the browser bundle ------------------------------------------------------------------------

const bundle = suite('browser bundle');

bundle('src/client bundles for the browser with protocol.ts as its only server-side import', async () => {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [new URL('../src/client/index.ts', import.meta.url).pathname],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  const ours = inputs.filter((i) => i.startsWith('src/'));
  assert.equal(ours.filter((i) => !i.startsWith('src/client/')), ['src/protocol.ts']);
  // `ws` resolves to its browser stub, which only runs where there is no native WebSocket.
  assert.ok(inputs.includes('node_modules/ws/browser.js'), inputs.join(', '));
  assert.not.match(result.outputFiles[0]!.text, /from ["']node:|require\(["']node:/);
});

bundle.run();
