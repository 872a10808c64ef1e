import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createMetrics } from '../src/metrics.js';
import { createSender, newSession, sent, type Socket } from '../src/session.js';

/** A socket whose send answers `status` (uWS: 1 sent, 0 buffered, 2 dropped for backpressure). */
function fakeSocket(status = 1) {
  const session = newSession({ tokens: 1, filledAt: 0, refused: 0, refusedSince: 0 });
  const frames: string[] = [];
  const ws = { getUserData: () => session, send: (f: string) => (frames.push(f), status) } as unknown as Socket;
  return { ws, session, frames };
}

const sessions = suite('session');

sessions('each new session has its own id and starts in no room, open, under the limit', () => {
  const a = newSession({ tokens: 1, filledAt: 0, refused: 0, refusedSince: 0 });
  const b = newSession({ tokens: 1, filledAt: 0, refused: 0, refusedSince: 0 });
  assert.is.not(a.id, b.id);
  assert.is(a.rooms.size, 0);
  assert.is(a.closed, false);
  assert.is(a.overLimit, false);
  assert.is(a.onDrain, undefined);
});

sessions('a frame uWS dropped for backpressure (status 2) marks the session over the limit; 0 and 1 do not', () => {
  const { ws, session } = fakeSocket();
  sent(ws, 0);
  sent(ws, 1);
  assert.is(session.overLimit, false);
  sent(ws, 2);
  assert.is(session.overLimit, true);
});

sessions('send writes {event, data, ref} as JSON, ref left out when there is none, and nothing once closed', () => {
  const metrics = createMetrics();
  const { send } = createSender(metrics);
  const { ws, session, frames } = fakeSocket();
  send(ws, 'pong', {}, 3);
  send(ws, 'pong', {});
  session.closed = true;
  send(ws, 'pong', {}, 4);
  assert.equal(frames, ['{"event":"pong","data":{},"ref":3}', '{"event":"pong","data":{}}']);
  metrics.close();
});

sessions('sendError sends the code, the table\'s message and the extra fields, and counts it by code', () => {
  const metrics = createMetrics();
  const { sendError } = createSender(metrics);
  const { ws, frames, session } = fakeSocket(2);
  sendError(ws, 'WEBHOOK_NOT_FOUND', 'j', { webhookId: 'w' });
  assert.equal(JSON.parse(frames[0]!), { event: 'error', data: { code: 'WEBHOOK_NOT_FOUND', message: 'Webhook not found', webhookId: 'w' }, ref: 'j' });
  assert.is(metrics.wsErrors.get('WEBHOOK_NOT_FOUND'), 1);
  assert.is(session.overLimit, true);
  metrics.close();
});

sessions.run();
