import { connect, type NatsConnection } from '@nats-io/transport-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { inlineMaxBytes } from '../src/natsbus.js';
import { eventually, metric } from './support/observe.js';
import { capture, ids, sleep, twoInstanceCases } from './support/instances.js';
import { connections, findNatsServer, startNats, type TestNats } from './support/nats.js';
import { createWebhook, startServer, uniqueId, type TestServer } from './support/server.js';
import { joined, type TestClient } from './support/ws.js';


/** The subjects an instance's NATS connection (by its client name) is subscribed to. */
async function subjectsOf(nats: TestNats, name: string): Promise<string[]> {
  const conn = (await connections(nats.monitor)).find((c) => c.name === name);
  return conn?.subscriptions_list ?? [];
}

interface Ctx {
  nats: TestNats;
  prefix: string;
  a: TestServer;
  b: TestServer;
  /** The NATS client names of A and B (`hooky <instance>`). */
  aName: string;
  bName: string;
  clients: TestClient[];
  /** A raw NATS client of the test, to look at what the instances publish. */
  spy: NatsConnection;
}

const binary = findNatsServer();
if (binary === undefined && process.env.CI !== 'true') {
  process.stdout.write('natsbus.test.ts: not run, nats-server is not installed (apt-get install nats-server)\n');
} else if (binary === undefined) {
  const missing = suite('the NATS bus in CI');
  missing('needs nats-server, which .ci/run installs', () => {
    assert.unreachable('nats-server is not installed: CI must run the NATS bus tests (apt-get install -y nats-server)');
  });
  missing.run();
} else {
  const two = suite<Ctx>('two instances over NATS on one database', { clients: [] } as unknown as Ctx);

  two.before(async (ctx) => {
    ctx.nats = await startNats(binary);
    ctx.prefix = `t${uniqueId('').slice(1)}`;
    const env = { HOOKY_NATS_URL: ctx.nats.url, HOOKY_NATS_PREFIX: ctx.prefix };
    const names = async () => new Set((await connections(ctx.nats.monitor)).map((c) => c.name ?? ''));
    ctx.a = await startServer(env);
    const withA = await names();
    ctx.b = await startServer(env);
    ctx.aName = [...withA].find((n) => n.startsWith('hooky '))!;
    ctx.bName = [...(await names())].find((n) => n.startsWith('hooky ') && !withA.has(n))!;
    assert.ok(ctx.aName && ctx.bName, 'each instance has a NATS connection of its own');
    ctx.spy = await connect({ servers: ctx.nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    ctx.clients = [];
  });
  two.after.each(async (ctx) => {
    await Promise.all(ctx.clients.map((c) => c.close()));
    ctx.clients = [];
  });
  two.after(async (ctx) => {
    await ctx.spy?.close();
    await ctx.a?.close();
    await ctx.b?.close();
    await ctx.nats?.close();
  });

  two('a capture on A reaches the members of its room on B exactly once and in order, its rows carried by NATS', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onB);
    const filledBefore = await metric(ctx.b.url, 'hooky_relay_filled_total');
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) sent.push(await capture(ctx.a.url, id, `n${i}`));
    await eventually(() => ids(onB.frames).length >= sent.length, 5000, 'every capture on B');
    await sleep(300); // room for a duplicate to show up
    assert.equal(ids(onB.frames), sent);
    assert.equal(
      onB.frames.filter((f) => f.event === 'new-request').map((f) => f.data.body),
      sent.map((_, i) => `n${i}`),
    );
    // With NOTIFY, B reads every one of A's requests from Postgres; over NATS it reads none, but
    // for one the periodic check may have seen committed a moment before its frame arrived.
    const filled = (await metric(ctx.b.url, 'hooky_relay_filled_total')) - filledBefore;
    assert.ok(filled < sent.length / 2, `B read ${filled} of ${sent.length} from Postgres`);
  });

  two(`a request past ${inlineMaxBytes / 1024} KiB travels by reference (its position only) and reaches B intact`, async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onB);
    const seen: string[] = [];
    const spying = ctx.spy.subscribe(`${ctx.prefix}.webhook.${id}`, { callback: (_err, msg) => void seen.push(msg.string()) });
    await ctx.spy.flush();
    const large = 'é€x'.repeat(40_000); // 240 KB of UTF-8 in 120,000 characters
    const small = await capture(ctx.a.url, id, 'small');
    const big = await capture(ctx.a.url, id, large);
    await eventually(() => ids(onB.frames).length >= 2 && seen.length >= 2, 5000, 'both on B and on the bus');
    spying.unsubscribe();
    const got = onB.frames.filter((f) => f.event === 'new-request');
    assert.equal(got.map((f) => f.data.id), [small, big]);
    assert.is(got[1]!.data.body, large, 'the large body arrives intact');
    assert.ok(seen[0]!.includes('\n') && seen[0]!.includes(small) && seen[0]!.includes('"small"'), 'the small one carries its row');
    assert.ok(/^\d+$/.test(seen[1]!), `the large one is its position alone: ${seen[1]!.slice(0, 80)}`);
  });

  two('an instance subscribes to a webhook’s subject only while its room has members there', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const subject = `${ctx.prefix}.webhook.${id}`;
    assert.ok((await subjectsOf(ctx.nats, ctx.bName)).includes(`${ctx.prefix}.control`), 'B hears the control subject');
    assert.not.ok((await subjectsOf(ctx.nats, ctx.bName)).includes(subject), 'no member, no subscription');
    const first = await joined(ctx.b.wsUrl, id);
    const second = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(first, second);
    await eventually(async () => (await subjectsOf(ctx.nats, ctx.bName)).includes(subject), 5000, 'B subscribed');
    assert.is((await subjectsOf(ctx.nats, ctx.bName)).filter((s) => s === subject).length, 1, 'once, for two members');
    assert.not.ok((await subjectsOf(ctx.nats, ctx.aName)).includes(subject), 'A has no member there');
    first.send({ event: 'leave', data: { webhookId: id } });
    await first.next('left');
    await sleep(200);
    assert.ok((await subjectsOf(ctx.nats, ctx.bName)).includes(subject), 'still one member');
    await second.close();
    await eventually(async () => !(await subjectsOf(ctx.nats, ctx.bName)).includes(subject), 5000, 'B unsubscribed');
  });

  two('A publishes a webhook’s batches only once another instance serves its room', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const seen: string[] = [];
    const spying = ctx.spy.subscribe(`${ctx.prefix}.webhook.${id}`, { callback: (_err, msg) => void seen.push(msg.string()) });
    await ctx.spy.flush();
    const alone = await capture(ctx.a.url, id);
    await sleep(300);
    assert.equal(seen, [], 'served nowhere else: nothing on the bus');
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onB);
    const served = await capture(ctx.a.url, id);
    await eventually(() => seen.length === 1 && ids(onB.frames).includes(served), 5000, 'the batch on the bus and on B');
    spying.unsubscribe();
    assert.ok(seen[0]!.includes(served), 'with its row');
    assert.not.ok(ids(onB.frames).includes(alone), 'the one before the join is not live news');
  });

  two('killing nats-server mid-stream and starting it again loses nothing: B fills the gap from Postgres', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onB);
    const resumesBefore = await metric(ctx.b.url, 'hooky_bus_resumes_total');
    const filledBefore = await metric(ctx.b.url, 'hooky_relay_filled_total');
    const sent: string[] = [];
    let killedAt = 0;
    let startedAt = 0;
    let resumedAt = 0;
    let upToRestart = 0;
    const loop = async () => {
      for (let i = 0; i < 300; i++) {
        sent.push(await capture(ctx.a.url, id));
        if (i === 100) {
          await ctx.nats.kill();
          killedAt = performance.now();
        }
        if (i === 200) {
          await ctx.nats.start();
          startedAt = performance.now();
          upToRestart = sent.length;
        }
      }
    };
    const watching = (async () => {
      await eventually(() => startedAt > 0, 60_000, 'the restart');
      await eventually(async () => (await metric(ctx.b.url, 'hooky_bus_resumes_total')) > resumesBefore, 10_000, 'B back on NATS');
      resumedAt = performance.now();
    })();
    await Promise.all([loop(), watching]);
    await eventually(() => ids(onB.frames).length >= sent.length, 10_000, 'every capture on B');
    await sleep(300);
    assert.equal(ids(onB.frames), sent, 'all, once, in order');
    // Back on the bus, B hears A again: a capture after the outage reaches it through NATS.
    await eventually(async () => (await subjectsOf(ctx.nats, ctx.bName)).includes(`${ctx.prefix}.webhook.${id}`), 5000, 'B subscribed again');
    if (process.env.HOOKY_FIGURES === '1') {
      const filled = (await metric(ctx.b.url, 'hooky_relay_filled_total')) - filledBefore;
      process.stderr.write(
        `\n  NATS outage: nats-server down ${(startedAt - killedAt).toFixed(0)} ms (${upToRestart - 101} captures meanwhile); ` +
          `started → B resumed ${(resumedAt - startedAt).toFixed(0)} ms; B read ${filled} of ${sent.length} from Postgres\n`,
      );
    }
  });

  two('a webhook created on A can be captured on B just after B found it missing', async (ctx) => {
    const id = uniqueId('late');
    const control: string[] = [];
    const spying = ctx.spy.subscribe(`${ctx.prefix}.control`, { callback: (_err, msg) => void control.push(msg.string()) });
    await ctx.spy.flush();
    assert.is((await fetch(`${ctx.b.url}/h/${id}`, { method: 'POST', body: 'x' })).status, 404);
    await createWebhook(ctx.a.url, { id });
    await eventually(() => control.includes(`n ${id}`), 5000, 'the creation on the control subject');
    spying.unsubscribe();
    await eventually(async () => (await fetch(`${ctx.b.url}/h/${id}`, { method: 'POST', body: 'x' })).status === 200, 5000, 'a capture on B');
  });

  two('a malformed message on a webhook’s subject is taken as a notice: the room gets only what Postgres holds', async (ctx) => {
    const { id } = await createWebhook(ctx.a.url);
    const onB = await joined(ctx.b.wsUrl, id);
    ctx.clients.push(onB);
    const real = await capture(ctx.a.url, id);
    await eventually(() => ids(onB.frames).includes(real), 5000, 'the real capture on B');
    const subject = `${ctx.prefix}.webhook.${id}`;
    const fake = '0190aaaa-0000-7000-8000-000000000000';
    for (const junk of ['', 'x y z', '2 nope 3\nabc', `2 ${fake} 7\nnot-obj`, `2 ${fake} 999\n{}`, `2 ${fake}\n{}`, '\n\n\n']) {
      ctx.spy.publish(subject, junk);
    }
    await ctx.spy.flush();
    const next = await capture(ctx.a.url, id);
    await eventually(() => ids(onB.frames).includes(next), 5000, 'the next capture on B');
    await sleep(300);
    assert.equal(ids(onB.frames), [real, next]);
  });

  twoInstanceCases(two);
  two.run();

  const auth = suite<{ nats: TestNats }>('HOOKY_NATS_URL with credentials');
  auth.before(async (ctx) => {
    ctx.nats = await startNats(binary, ['--user', 'hooky', '--pass', 's3cr:et']);
  });
  auth.after(async (ctx) => {
    await ctx.nats?.close();
  });

  auth('nats://user:pass@host logs in; without them start-up fails with a message naming HOOKY_NATS_URL, not the password', async (ctx) => {
    const port = new URL(ctx.nats.url).port;
    const server = await startServer({ HOOKY_NATS_URL: `nats://hooky:${encodeURIComponent('s3cr:et')}@127.0.0.1:${port}` });
    try {
      assert.ok((await connections(ctx.nats.monitor)).some((c) => c.name?.startsWith('hooky ')), 'connected');
    } finally {
      await server.close();
    }
    const err = await startServer({ HOOKY_NATS_URL: `nats://hooky:wrong@127.0.0.1:${port}` }).then(
      async (started) => (await started.close(), undefined),
      (e: Error) => e,
    );
    if (err === undefined) return assert.unreachable('started with a wrong password');
    assert.match(err.message, 'HOOKY_NATS_URL');
    assert.not.match(err.message, 'wrong');
  });

  auth.run();
}
