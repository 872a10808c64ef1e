/** The SDK's pending requests: joins and leaves the rate limit refused are sent again. */
import * as assert from 'uvu/assert';
import { withCleanup } from './support/suite.js';
import { createClient } from '../src/client/index.js';
import { startServer } from './support/server.js';
import { capture, newWebhook, record, tapped, until } from './support/client.js';

const rate = withCleanup('rate limit');

rate('joins over HOOKY_WS_RATE_LIMIT are sent again after retryAfterMs and all complete, without a 1008 close', async (ctx) => {
  // A bucket of 2, refilled at 2 per second: of three joins sent at once, the third is refused.
  const server = await startServer({ HOOKY_WS_RATE_LIMIT: '2', HOOKY_WS_RATE_BURST: '2', HOOKY_MAX_ROOMS: '3' });
  ctx.cleanup.push(() => server.close());
  const ids = [await newWebhook(server.url), await newWebhook(server.url), await newWebhook(server.url)];
  const tap = tapped();
  const client = createClient(server.url, { WebSocket: tap.Tapped });
  ctx.cleanup.push(() => client.close());
  const rec = record(client);
  await Promise.all(ids.map((id) => client.join(id)));
  const [limited] = rec.of('error');
  assert.is(limited!.code, 'RATE_LIMITED');
  assert.ok(typeof limited!.retryAfterMs === 'number' && limited!.retryAfterMs > 0, JSON.stringify(limited));
  assert.equal(
    tap.outbound.filter((f) => f.event === 'join').map((f) => f.data.webhookId),
    [...ids, ids[2]],
  );
  // The room is really joined: its requests arrive.
  const sent = await capture(server.url, ids[2]!);
  await until(() => rec.of('new-request').length === 1, 'the request');
  assert.is(rec.of('new-request')[0]!.id, sent);
  assert.is(rec.of('disconnect').length, 0);
  assert.is(rec.of('connected').length, 1);
});

rate.run();
