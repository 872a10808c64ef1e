import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { eventually } from './observe.js';
import { createWebhook, type TestServer } from './server.js';
import { joined, type Frame, type TestClient } from './ws.js';

/** Captures on `base` and resolves with the request id of the 200 answer. */
export async function capture(base: string, webhookId: string, body = 'x'): Promise<string> {
  const res = await fetch(`${base}/h/${webhookId}`, { method: 'POST', body });
  if (res.status !== 200) throw new Error(`capture: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

/** The request ids of the new-request frames, in arrival order. */
export const ids = (frames: Frame[]) => frames.filter((f) => f.event === 'new-request').map((f) => f.data.id as string);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What every two-instance suite has, whatever its bus. */
export interface Pair {
  a: TestServer;
  b: TestServer;
  clients: TestClient[];
}

/** The cases that hold alike over every bus between two instances on one database. */
export function twoInstanceCases<C extends Pair>(two: Test<C>): void {
  two('captures on both instances at once reach the members on each in one order, the commit order, once each', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const onA = await joined(ctx.a.wsUrl, id);
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onA, onB);
    const sent: string[] = [];
    const loop = async (base: string) => {
      for (let i = 0; i < 40; i++) sent.push(await capture(base, id));
    };
    await Promise.all([loop(ctx.a.url), loop(ctx.a.url), loop(ctx.b.url), loop(ctx.b.url)]);
    await eventually(() => ids(onA.frames).length >= sent.length && ids(onB.frames).length >= sent.length, 5000, 'every capture on both');
    await sleep(300);
    assert.equal(ids(onA.frames).length, sent.length, 'once each on A');
    assert.equal(ids(onA.frames), ids(onB.frames), 'the same order on A and B');
    assert.equal(new Set(ids(onA.frames)), new Set(sent));
  });

  two('deleting a webhook on A empties its room on B with WEBHOOK_DELETED, and B stops capturing for it', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    await capture(ctx.b.url, id); // B caches the webhook
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onB);
    assert.is((await fetch(`${ctx.a.url}/api/webhooks/${id}`, { method: 'DELETE' })).status, 204);
    const err = await onB.next('error');
    assert.equal([err.data.code, err.data.webhookId], ['WEBHOOK_DELETED', id]);
    assert.is((await fetch(`${ctx.b.url}/h/${id}`, { method: 'POST', body: 'x' })).status, 404);
  });
}
