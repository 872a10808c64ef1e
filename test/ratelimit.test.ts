import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRateLimit, strikeWindowMs } from '../src/ratelimit.js';

const bucket = suite('ratelimit: the token bucket');

bucket('a full bucket lets a burst through at once, then refuses', () => {
  const rate = createRateLimit({ rateLimit: 1, rateBurst: 5 });
  const b = rate.bucket(0);
  for (let i = 0; i < 5; i++) assert.is(rate.take(b, 0), 'pass', `frame ${i}`);
  assert.is(rate.take(b, 0), 'refuse');
});

bucket('tokens come back at rateLimit per second, never past the burst', () => {
  const rate = createRateLimit({ rateLimit: 2, rateBurst: 3 });
  const b = rate.bucket(0);
  for (let i = 0; i < 3; i++) rate.take(b, 0);
  assert.is(rate.take(b, 0), 'refuse');
  // Half a second at 2 per second is one token.
  assert.is(rate.take(b, 500), 'pass');
  assert.is(rate.take(b, 500), 'refuse');
  // An hour idle fills the bucket to the burst, not beyond.
  const later = 3_600_000;
  for (let i = 0; i < 3; i++) assert.is(rate.take(b, later), 'pass');
  assert.is(rate.take(b, later), 'refuse');
});

bucket('a refusal says how long until the next token, in ms', () => {
  const rate = createRateLimit({ rateLimit: 1, rateBurst: 1 });
  const b = rate.bucket(0);
  rate.take(b, 0);
  assert.is(rate.take(b, 250), 'refuse');
  assert.is(rate.retryAfterMs(b), 750);
});

bucket('rateLimit 0 lets every frame through', () => {
  const rate = createRateLimit({ rateLimit: 0, rateBurst: 1 });
  const b = rate.bucket(0);
  for (let i = 0; i < 1000; i++) assert.is(rate.take(b, 0), 'pass');
});

bucket.run();

const strikes = suite('ratelimit: the strike window');

strikes('more than a burst refused within the strike window closes; a burst refused does not', () => {
  const rate = createRateLimit({ rateLimit: 1, rateBurst: 5 });
  const b = rate.bucket(0);
  for (let i = 0; i < 5; i++) rate.take(b, 0);
  for (let i = 0; i < 5; i++) assert.is(rate.take(b, 0), 'refuse', `refusal ${i}`);
  assert.is(rate.take(b, 0), 'close');
});

strikes('refusals spread over more than the strike window start counting again', () => {
  // Refill slow enough that the bucket stays empty across the window.
  const rate = createRateLimit({ rateLimit: 0.0001, rateBurst: 2 });
  const b = rate.bucket(0);
  rate.take(b, 0);
  rate.take(b, 0);
  assert.is(rate.take(b, 0), 'refuse');
  assert.is(rate.take(b, 1), 'refuse');
  // Past the window the count starts over: two more refusals before a close.
  const t = strikeWindowMs + 1;
  assert.is(rate.take(b, t), 'refuse');
  assert.is(rate.take(b, t), 'refuse');
  assert.is(rate.take(b, t), 'close');
});

strikes.run();
