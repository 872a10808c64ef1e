import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createNotifyBus } from '../src/bus.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/connect.js';
import { newRequestId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { buildPayload } from '../src/payload.js';
import { createStore } from '../src/store.js';
import { testDatabaseUrl } from './support/db.js';
import { eventually, metric } from './support/observe.js';
import { capture, ids, sleep, twoInstanceCases } from './support/instances.js';
import { createWebhook, startServer, type TestServer } from './support/server.js';
import { joined, openClient, type TestClient } from './support/ws.js';

/** The pids of the LISTEN connections of every hooky instance on the test database. */
const busPids = async (sql: postgres.Sql) =>
  new Set((await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name like 'hooky bus %' and datname = current_database()`).map((r) => r.pid));

interface Ctx {
  a: TestServer;
  b: TestServer;
  sql: postgres.Sql;
  /** The pid of B's LISTEN connection. */
  bListener: number;
  clients: TestClient[];
}

const two = suite<Ctx>('two instances on one database', { clients: [] } as unknown as Ctx);

two.before(async (ctx) => {
  ctx.sql = postgres(await testDatabaseUrl(), { max: 2, onnotice: () => {} });
  ctx.a = await startServer();
  const before = await busPids(ctx.sql);
  ctx.b = await startServer();
  const mine = [...(await busPids(ctx.sql))].filter((pid) => !before.has(pid));
  assert.is(mine.length, 1, 'B listens on one connection of its own');
  ctx.bListener = mine[0]!;
  ctx.clients = [];
});
two.after.each(async (ctx) => {
  await Promise.all(ctx.clients.map((c) => c.close()));
  ctx.clients = [];
});
two.after(async (ctx) => {
  await ctx.a.close();
  await ctx.b.close();
  await ctx.sql.end();
});

two('a capture on A reaches the members of its room on B exactly once and in order', async (ctx) => {
  const { id } = await createWebhook(ctx.a.url);
  const onB = await joined(ctx.b.wsUrl, id);
  ctx.clients.push(onB);
  const sent: string[] = [];
  for (let i = 0; i < 30; i++) sent.push(await capture(ctx.a.url, id, `n${i}`));
  await eventually(() => ids(onB.frames).length >= sent.length, 5000, 'every capture on B');
  await sleep(300); // room for a duplicate to show up
  assert.equal(ids(onB.frames), sent);
});

two('a client that leaves A and resumes on B with since misses nothing while both keep capturing', async (ctx) => {
  const { id } = await createWebhook(ctx.a.url);
  const sent: string[] = [];
  let stop = false;
  const loop = async (base: string) => {
    while (!stop) sent.push(await capture(base, id));
  };
  const first = await joined(ctx.a.wsUrl, id);
  const loops = [loop(ctx.a.url), loop(ctx.b.url), loop(ctx.b.url)];
  await eventually(() => ids(first.frames).length >= 20, 5000, 'some captures on A');
  await first.close();
  const seen = ids(first.frames);
  const second = await openClient(ctx.b.wsUrl);
  ctx.clients.push(second);
  second.send({ event: 'join', data: { webhookId: id, since: seen[seen.length - 1] }, ref: 1 });
  await second.next('replayed');
  await eventually(() => ids(second.frames).length >= 20, 5000, 'live captures on B after the resume');
  stop = true;
  await Promise.all(loops);
  const missed = () => {
    const got = new Set([...seen, ...ids(second.frames)]);
    return sent.filter((r) => !got.has(r));
  };
  await eventually(() => missed().length === 0, 5000, 'every capture').catch(() => {});
  assert.equal(missed(), []);
});

two('a resume with since gets a request that committed after it with a smaller id, from the other writer', async (ctx) => {
  const w = await createWebhook(ctx.a.url);
  const v = await createWebhook(ctx.a.url);
  const live = await joined(ctx.b.wsUrl, w.id);
  ctx.clients.push(live);
  // Holding V's row keeps A's writer inside its batch for V; A's next capture for W gets its id
  // now but waits behind it, while B commits a later id for W at once.
  let release!: () => void;
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holding = ctx.sql.begin(async (tx) => {
    await tx`select 1 from webhooks where id = ${v.id} for update`;
    locked();
    await new Promise<void>((r) => (release = r));
  });
  await isLocked;
  const blocked = capture(ctx.a.url, v.id);
  await eventually(async () => (await metric(ctx.a.url, 'hooky_writer_queue')) === 0 && (await ctx.sql`select 1 from pg_locks where not granted`).length > 0, 5000, "A's batch for V waiting");
  const early = capture(ctx.a.url, w.id);
  await eventually(async () => (await metric(ctx.a.url, 'hooky_writer_queue')) === 1, 5000, "A's capture for W queued");
  const later = await capture(ctx.b.url, w.id);
  await eventually(() => ids(live.frames).includes(later), 5000, "B's capture delivered");
  release();
  await holding;
  await blocked;
  const earlier = await early;
  assert.ok(earlier < later, 'the request committed last has the smaller id');

  const resumed = await openClient(ctx.a.wsUrl);
  ctx.clients.push(resumed);
  resumed.send({ event: 'join', data: { webhookId: w.id, since: later }, ref: 'r' });
  await resumed.next('replayed');
  assert.equal(ids(resumed.frames), [earlier], 'the replay after the later id holds the earlier one');
  await eventually(() => ids(live.frames).includes(earlier), 5000, 'the earlier id delivered live on B');
  assert.equal(ids(live.frames), [later, earlier], 'live on B in commit order');
});

two("killing B's LISTEN connection mid-stream loses nothing, and B listens again", async (ctx) => {
  const { id } = await createWebhook(ctx.a.url);
  const onB = await joined(ctx.b.wsUrl, id);
  ctx.clients.push(onB);
  const resumesBefore = await metric(ctx.b.url, 'hooky_bus_resumes_total');
  const filledBefore = await metric(ctx.b.url, 'hooky_relay_filled_total');
  const sent: string[] = [];
  let killedAt = 0;
  let resumedAt = 0;
  let healedAt = 0;
  let during = 0;
  const loop = async () => {
    for (let i = 0; i < 300; i++) {
      sent.push(await capture(ctx.a.url, id));
      if (killedAt > 0 && resumedAt === 0) during++;
      if (i === 100) {
        killedAt = performance.now();
        await ctx.sql`select pg_terminate_backend(${ctx.bListener})`;
      }
    }
  };
  const watching = (async () => {
    await eventually(() => killedAt > 0, 20_000, 'the kill');
    await eventually(async () => (await metric(ctx.b.url, 'hooky_bus_resumes_total')) > resumesBefore, 10_000, 'B listening again');
    resumedAt = performance.now();
    const upTo = sent.length;
    await eventually(() => ids(onB.frames).length >= upTo, 10_000, 'B caught up');
    healedAt = performance.now();
  })();
  await Promise.all([loop(), watching]);
  await eventually(() => ids(onB.frames).length >= sent.length, 5000, 'every capture on B');
  await sleep(300);
  assert.equal(ids(onB.frames), sent, 'all, once, in order');
  if (process.env.HOOKY_FIGURES === '1') {
    const filled = (await metric(ctx.b.url, 'hooky_relay_filled_total')) - filledBefore;
    process.stderr.write(
      `\n  LISTEN outage: killed → listening again ${(resumedAt - killedAt).toFixed(0)} ms, then B had every earlier request ${(healedAt - resumedAt).toFixed(0)} ms later; ` +
        `${during} requests committed during the outage; B read ${filled} of ${sent.length} from Postgres (all of A's, as always)\n`,
    );
  }
});

two('a committed batch whose notice never came reaches B within about a second (the periodic check)', async (ctx) => {
  const { id } = await createWebhook(ctx.a.url);
  const onB = await joined(ctx.b.wsUrl, id);
  ctx.clients.push(onB);
  // Written straight into Postgres: no instance notifies, as when a writer dies after its commit.
  const rid = newRequestId();
  const facts = { method: 'POST', path: '/', headers: {}, rawQuery: '', sourceIp: '127.0.0.1' };
  const row = { id: rid, webhookId: id, json: buildPayload(rid, id, facts, Buffer.alloc(0), new Date()).json };
  await createStore(ctx.sql).insertRequests([row]);
  await eventually(() => ids(onB.frames).includes(row.id), 5000, 'the silent commit on B');
});

two('a deletion whose notice never came still empties the room on B (the periodic check)', async (ctx) => {
  const { id } = await createWebhook(ctx.a.url);
  const onB = await joined(ctx.b.wsUrl, id);
  ctx.clients.push(onB);
  await createStore(ctx.sql).deleteWebhook(id); // straight in Postgres: nobody notifies
  const err = await onB.next('error');
  assert.equal([err.data.code, err.data.webhookId], ['WEBHOOK_DELETED', id]);
});

two('a webhook created on A can be joined and captured on B even just after B found it missing', async (ctx) => {
  const id = `t-late-${Date.now().toString(36)}`;
  const probe = await openClient(ctx.b.wsUrl);
  ctx.clients.push(probe);
  probe.send({ event: 'join', data: { webhookId: id } });
  assert.is((await probe.next('error')).data.code, 'WEBHOOK_NOT_FOUND', 'not joinable before it exists');
  assert.is((await fetch(`${ctx.b.url}/h/${id}`, { method: 'POST', body: 'x' })).status, 404);
  await createWebhook(ctx.a.url, { id });
  await eventually(async () => (await fetch(`${ctx.b.url}/h/${id}`, { method: 'POST', body: 'x' })).status === 200, 5000, 'a capture on B');
  probe.send({ event: 'join', data: { webhookId: id } });
  await probe.next('joined');
});

two('REST reads and joins on B agree with Postgres at once, whatever B\'s cache holds: a webhook deleted or created with no notice', async (ctx) => {
  const store = createStore(ctx.sql);
  const { id } = await createWebhook(ctx.a.url);
  assert.is((await fetch(`${ctx.b.url}/api/webhooks/${id}`)).status, 200, 'B knows it');
  await store.deleteWebhook(id); // straight in Postgres: nobody notifies, as while a notice is on its way
  for (const path of ['', '/requests', '/export']) assert.is((await fetch(`${ctx.b.url}/api/webhooks/${id}${path}`)).status, 404, `GET …${path}`);
  assert.is((await fetch(`${ctx.b.url}/h/${id}`, { method: 'POST', body: 'x' })).status, 404, 'a capture is not stored');
  // Created with no notice, once B remembers it missing.
  const late = `t-quiet-${Date.now().toString(36)}`;
  const probe = await openClient(ctx.b.wsUrl);
  ctx.clients.push(probe);
  probe.send({ event: 'join', data: { webhookId: late } });
  assert.is((await probe.next('error')).data.code, 'WEBHOOK_NOT_FOUND');
  assert.is((await fetch(`${ctx.b.url}/h/${late}`, { method: 'POST', body: 'x' })).status, 404);
  await store.createWebhook(late, null);
  assert.is((await fetch(`${ctx.b.url}/api/webhooks/${late}`)).status, 200);
  probe.send({ event: 'join', data: { webhookId: late }, ref: 'again' });
  assert.is((await probe.next('joined')).ref, 'again');
  await store.deleteWebhook(late);
});

twoInstanceCases(two);
two.run();

const notifyBus = suite('the NOTIFY bus');

notifyBus('a lone instance sends no NOTIFY per batch; once another is heard it does, and never hears its own', async () => {
  const config = loadConfig({ DATABASE_URL: await testDatabaseUrl() });
  const log = createLogger('silent');
  const db = await openDatabase(config.db, log);
  const sql = postgres(await testDatabaseUrl(), { max: 1, onnotice: () => {} });
  const seen: string[] = [];
  const heard: string[] = [];
  const handlers = (to: string[]) => ({
    committed: (w: string, p: number | undefined) => to.push(`${w}@${p}`),
    created: () => {},
    deleted: () => {},
    resumed: () => {},
  });
  try {
    await sql.listen('hooky', (payload) => seen.push(payload));
    const lone = await createNotifyBus(db, handlers(heard), log);
    await eventually(() => seen.some((m) => m.startsWith('h ')), 5000, 'a heartbeat');
    lone.committed(new Map([['w1', 1]]));
    await sleep(200);
    assert.equal(seen.filter((m) => m.startsWith('c ')), [], 'alone: no NOTIFY for the batch');
    const other = await createNotifyBus(db, handlers([]), log);
    await sleep(200); // its first heartbeat reaches the lone one
    lone.committed(new Map([['w1', 2], ['w2', 7]]));
    await eventually(() => seen.some((m) => m.startsWith('c ')), 5000, 'the batch notified');
    assert.ok(/^c \S+ w1 2 w2 7$/.test(seen.find((m) => m.startsWith('c '))!));
    assert.equal(heard, [], 'its own message does not come back');
    other.committed(new Map([['w3', 4]]));
    await eventually(() => heard.length > 0, 5000, 'the other one heard');
    assert.equal(heard, ['w3@4']);
    await other.close();
    await lone.close();
  } finally {
    await sql.end();
    await db.close();
  }
});

notifyBus.run();
