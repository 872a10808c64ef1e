import postgres from 'postgres';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { requestIdFloor } from '../src/protocol.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { ageLockKey, createRetention } from '../src/retention.js';
import { createStore } from '../src/store.js';
import { scratchDatabase } from './support/db.js';
import { uuidV7 } from './support/ids.js';
import { eventually, figures, metric } from './support/observe.js';
import { sleep } from './support/instances.js';
import { createWebhook, startServer, uniqueId } from './support/server.js';

const hour = 3600_000;

// --- The job, on a server ------------------------------------------------------------------

interface Ctx {
  sql: postgres.Sql;
  db: Awaited<ReturnType<typeof scratchDatabase>>;
}
// Retention deletes across the whole database: these tests get one of their own.
const job = suite<Ctx>('retention: background job', {} as never);
job.before(async (ctx) => {
  ctx.db = await scratchDatabase();
  ctx.sql = postgres(ctx.db.url, { max: 2, onnotice: () => {} });
});
job.after(async (ctx) => {
  await ctx.sql.end();
  await ctx.db.drop();
});

const idsOf = async (sql: postgres.Sql, webhookId: string) =>
  (await sql<{ id: string }[]>`select id::text as id from requests where webhook_id = ${webhookId} order by id`).map((r) => r.id);

/** Rows made `ageMs` ago, straight into the table, as if captured then. */
async function seed(sql: postgres.Sql, webhookId: string, n: number, ageMs: number): Promise<void> {
  const t = Date.now() - ageMs;
  const rowIds = Array.from({ length: n }, (_, i) => uuidV7(t + i));
  for (let i = 0; i < n; i += 10_000) {
    const chunk = rowIds.slice(i, i + 10_000);
    await sql`insert into requests (id, webhook_id, payload)
      select id, ${webhookId}, '{"seeded":true}'::json from unnest(${chunk}::uuid[]) as t (id)`;
  }
}

job('keeps the newest HOOKY_RETENTION_MAX_REQUESTS requests of each webhook', async (ctx) => {
  const s = await startServer({
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '5',
    HOOKY_RETENTION_MAX_AGE_HOURS: '0',
    HOOKY_RETENTION_INTERVAL_MS: '50',
    HOOKY_RETENTION_BATCH: '2',
  });
  try {
    const busy = await createWebhook(s.url);
    const quiet = await createWebhook(s.url);
    const acked: string[] = [];
    for (let i = 0; i < 12; i++) {
      acked.push(((await (await fetch(`${s.url}/h/${busy.id}`, { method: 'POST', body: String(i) })).json()) as { id: string }).id);
    }
    for (let i = 0; i < 3; i++) await fetch(`${s.url}/h/${quiet.id}`, { method: 'POST', body: 'q' });
    await eventually(async () => (await idsOf(ctx.sql, busy.id)).length === 5, 5000, 'trimmed to 5');
    assert.equal(await idsOf(ctx.sql, busy.id), acked.slice(-5), 'the newest five are kept');
    assert.is((await idsOf(ctx.sql, quiet.id)).length, 3, 'a webhook under the limit is left alone');
    await eventually(async () => (await metric(s.url, 'hooky_retention_deleted_total{rule="max_requests"}')) >= 7, 2000, 'seven counted');
    // Later writes are trimmed by later passes too.
    for (let i = 0; i < 4; i++) acked.push(((await (await fetch(`${s.url}/h/${busy.id}`, { method: 'POST' })).json()) as { id: string }).id);
    await eventually(async () => (await idsOf(ctx.sql, busy.id))[0] === acked[acked.length - 5], 5000, 'trimmed again');
    assert.equal(await idsOf(ctx.sql, busy.id), acked.slice(-5));
  } finally {
    await s.close();
  }
});

/**
 * Waits for a rule's deletion counter to reach `n`, then checks it stopped there. The rows are
 * gone as soon as a DELETE commits, but its count is added only when its answer reaches hooky:
 * reading the counter the moment the rows are seen gone can come a batch short.
 */
async function settled(url: string, rule: string, n: number): Promise<void> {
  const read = () => metric(url, `hooky_retention_deleted_total{rule="${rule}"}`);
  await eventually(async () => (await read()) >= n, 2000, `${n} counted for ${rule}`);
  assert.is(await read(), n);
}

/** `n` rows of exactly `bytes` bytes of payload each, made `ageMs` ago; their ids, oldest first. */
async function seedSized(sql: postgres.Sql, webhookId: string, n: number, bytes: number, ageMs: number): Promise<string[]> {
  const t = Date.now() - ageMs;
  const rowIds = Array.from({ length: n }, (_, i) => uuidV7(t + i));
  const payload = `{"p":"${'x'.repeat(bytes - 8)}"}`;
  assert.is(Buffer.byteLength(payload), bytes);
  await sql`insert into requests (id, webhook_id, payload) select id, ${webhookId}, ${payload} from unnest(${rowIds}::uuid[]) as t (id)`;
  return rowIds;
}

job('keeps the newest HOOKY_RETENTION_MAX_BYTES of stored payload per webhook, deleting the oldest first in batches', async (ctx) => {
  const s = await startServer({
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '0',
    HOOKY_RETENTION_MAX_AGE_HOURS: '0',
    HOOKY_RETENTION_MAX_BYTES: '35000',
    HOOKY_RETENTION_INTERVAL_MS: '50',
    HOOKY_RETENTION_BATCH: '2',
  });
  try {
    const big = await createWebhook(s.url);
    const small = await createWebhook(s.url);
    // 10 × 10,000 bytes, then one capture of a few hundred bytes, which marks the webhook as
    // written to (rows seeded straight into the table are only seen by the first pass): the
    // capture and the newest three seeded (about 30,500 bytes) fit the budget, a fourth does not.
    const seeded = await seedSized(ctx.sql, big.id, 10, 10_000, 60_000);
    await seedSized(ctx.sql, small.id, 3, 10_000, 60_000);
    const capture = async (id: string, body: string) =>
      ((await (await fetch(`${s.url}/h/${id}`, { method: 'POST', body })).json()) as { id: string }).id;
    const fresh = await capture(big.id, 'small');
    await capture(small.id, 'small');
    await eventually(async () => (await idsOf(ctx.sql, big.id)).length === 4, 5000, 'trimmed to 4');
    assert.equal(await idsOf(ctx.sql, big.id), [...seeded.slice(-3), fresh], 'the newest are kept');
    assert.is((await idsOf(ctx.sql, small.id)).length, 4, 'a webhook within its budget is left alone');
    await settled(s.url, 'max_bytes', 7);

    // Later captures are trimmed by later passes. A capture whose payload alone passes the
    // budget cannot be kept within it: it goes, with the four older ones.
    assert.match(await capture(big.id, 'y'.repeat(40_000)), /^[0-9a-f-]{36}$/);
    await eventually(async () => (await idsOf(ctx.sql, big.id)).length === 0, 5000, 'over budget on its own');
    await settled(s.url, 'max_bytes', 12);
  } finally {
    await s.close();
  }
});

job('deletes the requests older than HOOKY_RETENTION_MAX_AGE_HOURS; newer ones stay', async (ctx) => {
  const s = await startServer({
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '0',
    HOOKY_RETENTION_MAX_AGE_HOURS: '1',
    HOOKY_RETENTION_INTERVAL_MS: '50',
    HOOKY_RETENTION_BATCH: '7',
  });
  try {
    const { id } = await createWebhook(s.url);
    await seed(ctx.sql, id, 30, 2 * hour);
    await seed(ctx.sql, id, 4, 0.5 * hour);
    const fresh = ((await (await fetch(`${s.url}/h/${id}`, { method: 'POST' })).json()) as { id: string }).id;
    await eventually(async () => (await idsOf(ctx.sql, id)).length === 5, 5000, 'old rows gone');
    const left = await idsOf(ctx.sql, id);
    assert.is(left[4], fresh);
    const cutoff = requestIdFloor(Date.now() - hour);
    for (const r of left) assert.ok(r > cutoff, `${r} is younger than an hour`);
    await eventually(async () => (await metric(s.url, 'hooky_retention_deleted_total{rule="max_age"}')) >= 30, 2000, 'thirty counted');
  } finally {
    await s.close();
  }
});

job('a large backlog is deleted in batches while captures go on unhindered', async (ctx) => {
  const s = await startServer({
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '0',
    HOOKY_RETENTION_MAX_AGE_HOURS: '1',
    HOOKY_RETENTION_INTERVAL_MS: '10',
    HOOKY_RETENTION_BATCH: '500',
  });
  try {
    const old = await createWebhook(s.url);
    const live = await createWebhook(s.url);
    const backlog = 50_000;
    await seed(ctx.sql, old.id, backlog, 3 * hour);
    const deleted = () => metric(s.url, 'hooky_retention_deleted_total{rule="max_age"}');
    await eventually(async () => (await deleted()) > 0, 5000, 'retention started');
    const t0 = Date.now();
    let captured = 0;
    let slowest = 0;
    let duringDeletion = 0;
    // Ten senders capture for as long as the backlog is being deleted.
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while ((await deleted()) < backlog && Date.now() - t0 < 30_000) {
          const start = Date.now();
          const res = await fetch(`${s.url}/h/${live.id}`, { method: 'POST', body: 'x' });
          assert.is(res.status, 200);
          await res.arrayBuffer();
          slowest = Math.max(slowest, Date.now() - start);
          captured++;
          if ((await deleted()) < backlog) duringDeletion++;
        }
      }),
    );
    const tookMs = Date.now() - t0;
    assert.is(await deleted(), backlog, 'the whole backlog went');
    assert.is((await idsOf(ctx.sql, old.id)).length, 0);
    assert.is((await idsOf(ctx.sql, live.id)).length, captured, 'every capture is stored');
    assert.ok(duringDeletion >= 10, `captures answered while deleting: ${duringDeletion}`);
    // A DELETE holding a table lock, or the pool, would stall captures for the whole backlog.
    assert.ok(slowest < 1000, `slowest capture ${slowest} ms`);
    figures('retention backlog', { backlog, deletionMs: tookMs, captured, duringDeletion, slowestCaptureMs: slowest });
  } finally {
    await s.close();
  }
});

job('shutdown stops the job: no DELETE runs after close', async (ctx) => {
  const s = await startServer({
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '0',
    HOOKY_RETENTION_MAX_AGE_HOURS: '1',
    HOOKY_RETENTION_INTERVAL_MS: '10',
    HOOKY_RETENTION_BATCH: '100',
  });
  const { id } = await createWebhook(s.url);
  try {
    await seed(ctx.sql, id, 20_000, 3 * hour);
    await eventually(async () => (await metric(s.url, 'hooky_retention_deleted_total{rule="max_age"}')) > 0, 5000, 'retention started');
  } finally {
    await s.close();
  }
  const left = (await idsOf(ctx.sql, id)).length;
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(left > 0, 'closed mid-backlog');
  assert.is((await idsOf(ctx.sql, id)).length, left, 'nothing deleted after close');
  await ctx.sql`delete from requests where webhook_id = ${id}`;
});

/** Rows made `ageMs` ago, `perBatch` to a batch, committed through the store: each batch gets its batch row. */
async function seedBatches(sql: postgres.Sql, webhookId: string, n: number, ageMs: number, perBatch = 1, json = (id: string) => JSON.stringify({ id })) {
  const t = Date.now() - ageMs;
  const rowIds = Array.from({ length: n }, (_, i) => uuidV7(t + i));
  const store = createStore(sql);
  for (let i = 0; i < n; i += perBatch) {
    await store.insertRequests(rowIds.slice(i, i + perBatch).map((id) => ({ id, webhookId, json: json(id) })));
  }
  return rowIds;
}

/** The batches of a webhook's batch rows, and those of its requests: retention keeps the two equal. */
async function batchKeys(sql: postgres.Sql, webhookId: string) {
  const keys = async (table: 'requests' | 'request_batches') =>
    (await sql<{ batch: string }[]>`select distinct batch::text as batch from ${sql(table)} where webhook_id = ${webhookId} order by 1`).map((r) => r.batch);
  return { rows: await keys('requests'), batches: await keys('request_batches') };
}

job('each rule deletes the batch rows it leaves empty, and keeps a batch with a row left', async (ctx) => {
  const s = await startServer({
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '4',
    HOOKY_RETENTION_MAX_BYTES: '25000',
    HOOKY_RETENTION_MAX_AGE_HOURS: '1',
    HOOKY_RETENTION_INTERVAL_MS: '50',
    HOOKY_RETENTION_BATCH: '2',
  });
  try {
    const aged = await createWebhook(s.url);
    const counted = await createWebhook(s.url);
    const sized = await createWebhook(s.url);
    await seedBatches(ctx.sql, aged.id, 3, 2 * hour);
    // Its first batch holds two rows (c1, c2): the older one goes past the limit, the newer one stays.
    const [c1, c2, c3] = await seedBatches(ctx.sql, counted.id, 3, 60_000, 2);
    await seedBatches(ctx.sql, sized.id, 3, 60_000, 1, (id) => JSON.stringify({ id, pad: 'x'.repeat(10_000) }));
    // Captures mark the webhooks written to, for passes that began before the seeding ended.
    const capture = async (id: string) => ((await (await fetch(`${s.url}/h/${id}`, { method: 'POST', body: 'c' })).json()) as { id: string }).id;
    for (const w of [aged, sized]) await capture(w.id);
    const fresh = [await capture(counted.id), await capture(counted.id)];
    await eventually(
      async () => (await idsOf(ctx.sql, aged.id)).length === 1 && (await idsOf(ctx.sql, counted.id)).length === 4 && (await idsOf(ctx.sql, sized.id)).length === 3,
      5000,
      'every rule applied',
    );
    assert.equal(await idsOf(ctx.sql, counted.id), [c2, c3, ...fresh].sort());
    assert.not.ok((await idsOf(ctx.sql, counted.id)).includes(c1!));
    for (const rule of ['max_age', 'max_requests', 'max_bytes']) assert.ok((await metric(s.url, `hooky_retention_deleted_total{rule="${rule}"}`)) >= 1, rule);
    for (const w of [aged, counted, sized]) {
      const { rows, batches } = await batchKeys(ctx.sql, w.id);
      assert.equal(batches, rows, `${w.id}: a batch row for each batch with a row left, no other`);
    }
    assert.is((await batchKeys(ctx.sql, counted.id)).batches.length, 4, 'the split batch, c3\'s and the two captures\'');
  } finally {
    await s.close();
  }
});

job('two instances on one database: one age pass at a time, the backlog and its batch rows all go', async (ctx) => {
  const env = {
    DATABASE_URL: ctx.db.url,
    HOOKY_RETENTION_MAX_REQUESTS: '0',
    HOOKY_RETENTION_MAX_AGE_HOURS: '1',
    HOOKY_RETENTION_INTERVAL_MS: '10',
    HOOKY_RETENTION_BATCH: '50',
  };
  // Made before either instance starts (the first test's server migrated this database).
  const id = uniqueId();
  await createStore(ctx.sql).createWebhook(id, null);
  const backlog = 2000;
  await seedBatches(ctx.sql, id, backlog, 3 * hour, 20);
  // While something else holds the age lock, neither instance runs the age pass.
  let release!: () => void;
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = ctx.sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${ageLockKey})`;
    locked();
    await new Promise<void>((r) => (release = r));
  });
  await isLocked;
  const [a, b] = await Promise.all([startServer(env), startServer(env)]);
  try {
    const deleted = async () => {
      const n = await Promise.all([a, b].map((s) => metric(s.url, 'hooky_retention_deleted_total{rule="max_age"}')));
      return n.map((x) => (Number.isNaN(x) ? 0 : x));
    };
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await deleted(), [0, 0], 'the lock is held elsewhere: no pass');
    assert.is((await idsOf(ctx.sql, id)).length, backlog);
    release();
    await holder;
    await eventually(async () => (await idsOf(ctx.sql, id)).length === 0, 10_000, 'backlog gone');
    // The rows are gone once the DELETE commits; its count is added when the answer arrives.
    await eventually(async () => (await deleted()).reduce((x, y) => x + y) >= backlog, 2000, 'every deletion counted');
    const [da, db] = await deleted();
    assert.is(da! + db!, backlog, 'each row counted once, by the instance that deleted it');
    assert.equal(await batchKeys(ctx.sql, id), { rows: [], batches: [] });
  } finally {
    release();
    await holder;
    await Promise.all([a.close(), b.close()]);
  }
});

job('the byte rule sizes only the rows stored since its last pass while a webhook stays under its budget', async (ctx) => {
  const metrics = createMetrics();
  const retention = createRetention(
    ctx.sql,
    { maxRequests: 0, maxBytes: 150_000, maxAgeMs: 0, intervalMs: 20, batch: 1000, lateMs: 0 },
    { metrics, log: createLogger('silent') },
  );
  const sized = () => metrics.retentionSized.value;
  // Until a pass is over: the count stops moving.
  const passOver = async () => {
    for (let last = -1; last !== sized(); ) {
      last = sized();
      await sleep(150);
    }
  };
  const id = uniqueId('sized');
  await createStore(ctx.sql).createWebhook(id, null);
  try {
    await seedSized(ctx.sql, id, 100, 1000, 60_000);
    retention.start();
    // The first pass sizes every row of every webhook: 100 here, others' too.
    await eventually(() => sized() >= 100, 5000, 'the first pass');
    await passOver();
    const afterFirst = sized();
    const fresh = await seedSized(ctx.sql, id, 10, 1000, 0);
    retention.written([{ id: fresh[0]!, webhookId: id, json: '' }]);
    await eventually(() => sized() > afterFirst, 5000, 'the second pass');
    await passOver();
    assert.is(sized() - afterFirst, 10, 'the ten new rows, not the 110');
    assert.is((await idsOf(ctx.sql, id)).length, 110, 'under the budget: all kept');
    // Past the budget (170 × 1,000 bytes against 150,000): every row is sized, the oldest 20 go.
    const more = await seedSized(ctx.sql, id, 60, 1000, -1000);
    retention.written([{ id: more[0]!, webhookId: id, json: '' }]);
    await eventually(async () => (await idsOf(ctx.sql, id)).length === 150, 5000, 'trimmed to the budget');
    assert.equal((await idsOf(ctx.sql, id)).slice(-60), more, 'the newest are kept');
  } finally {
    await retention.close();
  }
});

job.run();
