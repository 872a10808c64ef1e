/** The SDK's pending requests: joins and leaves the rate limit refused are sent again. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createPending, type PendingJoin, type PendingLeave } from '../src/client/pending.js';
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

const unit = suite('pending requests');

unit('a lost connection settles every pending leave as left and forgets every join', async () => {
  const sent: object[] = [];
  const pending = createPending({ minDelayMs: 10, maxDelayMs: 1000 }, { send: (f) => sent.push(f), rejoin: () => true });
  const join = pending.join('a', false);
  const leaving = pending.leave('b');
  assert.equal(sent, [{ event: 'leave', data: { webhookId: 'b' }, ref: join + 1 }]);
  pending.reset();
  assert.equal(await leaving, { webhookId: 'b', room: 'webhook:b' });
  assert.is(pending.get(join), undefined);
});

unit('after a rate-limit refusal, the requests still unanswered are sent again, the joins through rejoin, the leave under a new ref', async () => {
  const sent: object[] = [];
  const rejoined: (number | string)[] = [];
  const pending = createPending({ minDelayMs: 10, maxDelayMs: 1000 }, { send: (f) => sent.push(f), rejoin: (ref) => (rejoined.push(ref), true) });
  const answered = pending.join('a', false);
  const unanswered = pending.join('b', false);
  const leaving = pending.leave('c');
  (pending.get(answered) as PendingJoin).answered = true;
  pending.throttled(20);
  await until(() => sent.length === 2, 'the leave sent again');
  assert.equal(rejoined, [unanswered], 'the answered join is not sent again');
  assert.equal(sent[1], { event: 'leave', data: { webhookId: 'c' }, ref: 4 });
  // Both refs lead to the one leave; it settles once.
  const left = { webhookId: 'c', room: 'webhook:c' };
  assert.ok(pending.settleLeave(pending.get(4) as PendingLeave, { left }));
  assert.not.ok(pending.settleLeave(pending.get(3) as PendingLeave, { left }));
  assert.equal(await leaving, left);
  pending.reset();
});

unit.run();
