import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Store, Webhook } from '../src/store.js';
import { createWebhookCache } from '../src/webhooks.js';

function countingStore(existing: Record<string, Webhook>) {
  const asked: string[] = [];
  const store = {
    async getWebhook(id: string) {
      asked.push(id);
      return existing[id];
    },
  } as unknown as Store;
  return { store, asked };
}

const hook = (id: string): Webhook => ({ id, createdAt: '2026-01-01T00:00:00.000Z', response: null });
const test = suite('webhooks cache');

test('a known webhook is answered from memory after the first lookup', async () => {
  const { store, asked } = countingStore({ a: hook('a') });
  const cache = createWebhookCache(store);
  assert.equal(await cache.find('a'), hook('a'));
  assert.equal(cache.find('a'), hook('a'), 'synchronously');
  assert.equal(asked, ['a']);
});

test('a flood of lookups for an unknown id costs one query, and the miss is remembered briefly', async () => {
  const { store, asked } = countingStore({});
  const cache = createWebhookCache(store);
  const all = await Promise.all(Array.from({ length: 100 }, () => cache.find('nope')));
  assert.ok(all.every((w) => w === undefined));
  assert.is(cache.find('nope'), undefined, 'the miss is answered synchronously');
  assert.equal(asked, ['nope']);
});

test('creating a webhook through this instance ends its remembered miss at once', async () => {
  const { store } = countingStore({});
  const cache = createWebhookCache(store);
  assert.is(await cache.find('new'), undefined);
  cache.remember(hook('new'));
  assert.equal(cache.find('new'), hook('new'));
});

test('forget drops a deleted webhook', async () => {
  const existing: Record<string, Webhook> = { d: hook('d') };
  const { store } = countingStore(existing);
  const cache = createWebhookCache(store);
  await cache.find('d');
  delete existing['d'];
  cache.forget('d');
  assert.is(await cache.find('d'), undefined);
});

test.run();
