import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createBudget } from '../src/budget.js';

const test = suite('budget: a ceiling on bytes held at once');

test('holds take bytes while they fit, and give them back once', () => {
  const changes: number[] = [];
  const budget = createBudget(1000, (d) => changes.push(d));
  const a = budget.hold();
  const b = budget.hold();
  assert.ok(a.take(600));
  assert.not.ok(b.take(500), 'past the ceiling while another holds bytes');
  assert.is(b.bytes, 0, 'nothing taken when refused');
  assert.ok(b.take(400));
  assert.is(budget.held, 1000);
  a.release();
  a.release();
  assert.is(budget.held, 400, 'a second release gives back nothing more');
  assert.not.ok(a.take(1), 'a released hold takes nothing');
  b.release();
  assert.equal(changes, [600, 400, -600, -400]);
});

test('one item larger than the ceiling passes alone, taken at once or as it streams', () => {
  const budget = createBudget(1000);
  const whole = budget.hold();
  assert.ok(whole.take(2500), 'at once, nothing else held');
  whole.release();
  const streamed = budget.hold();
  for (let i = 0; i < 5; i++) assert.ok(streamed.take(500), `chunk ${i}: only its own bytes are held`);
  assert.is(budget.held, 2500);
  const other = budget.hold();
  assert.not.ok(other.take(1), 'nothing else fits beside it');
  streamed.release();
  assert.ok(other.take(1));
  // Once another holds bytes, a streaming item stops at the ceiling again.
  const late = budget.hold();
  assert.ok(late.take(999));
  assert.not.ok(late.take(1));
  other.release();
  late.release();
});

test.run();
