/**
 * The memory attacks of issue 9 at their full size, against hooky in its own process with its
 * default settings (env given here overrides them), printing one JSON line of figures per attack:
 * peak RSS, the slowest `/healthz` and whether the server survived.
 *
 *   DATABASE_URL=postgres://… node --import tsx bench/memory.ts [replay] [list] [mixed] [inflight]
 *
 * - replay: 45 captures of 10 MiB (random bytes, so 14 MB payloads), then one socket sends 10
 *   `join`s with `since` from the start and reads everything;
 * - list: the same rows, 8 concurrent `GET …/requests?limit=1000`;
 * - mixed: the same rows, 6 listings and 4 sockets each sending one such `join`, all at once;
 * - inflight: 200 connections each sending 10 MiB − 1 of a 10 MiB body and holding it; then they
 *   close, and RSS is read again 5 s later.
 * The 45 captures are stored once, in webhook `attack-45x10mib`, and reused by later runs.
 */
import postgres from 'postgres';
import { bodiesInFlight, listings, replays, seedCaptures, watch } from '../test/support/attacks.js';
import { rssMiB } from '../test/support/observe.js';
import { spawnMain, type Running } from '../test/support/process.js';

const MiB = 1024 * 1024;
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  process.stderr.write('set DATABASE_URL\n');
  process.exit(2);
}
const attacks = process.argv.slice(2).filter((a) => a !== '--');
const chosen = attacks.length > 0 ? attacks : ['replay', 'list', 'inflight'];
const seeded = 'attack-45x10mib';
const env = { DATABASE_URL: databaseUrl };

async function start(): Promise<Running> {
  return spawnMain(env, 60_000);
}

async function stop(r: Running) {
  if (r.child.exitCode === null) r.child.kill('SIGKILL');
  await r.exited;
}

/** Ensures the 45 large captures exist (seeding them through a server of its own). */
async function seed() {
  const sql = postgres(databaseUrl!, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from requests where webhook_id = ${seeded}`.catch(() => [{ n: 0 }]);
    if ((row?.n ?? 0) >= 45) return;
    const r = await start();
    try {
      await fetch(`${r.url}/api/webhooks`, { method: 'POST', body: JSON.stringify({ id: seeded }) });
      process.stderr.write(`seeding ${45 - row!.n} captures of 10 MiB into ${seeded}\n`);
      await seedCaptures(r.url, seeded, 45 - row!.n, 10 * MiB - 64 * 1024);
    } finally {
      await stop(r);
    }
  } finally {
    await sql.end();
  }
}

function report(attack: string, values: Record<string, unknown>) {
  process.stdout.write(`${JSON.stringify({ attack, ...values })}\n`);
}

for (const attack of chosen) {
  if (attack === 'replay' || attack === 'list' || attack === 'mixed') await seed();
  const r = await start();
  const before = rssMiB(r.child.pid!);
  const w = watch(r.url, r.child.pid!);
  const t0 = Date.now();
  try {
    if (attack === 'replay') {
      const got = await replays(`${r.url.replace('http', 'ws')}/ws`, seeded, 10, 180_000);
      report(attack, { rssBeforeMiB: +before.toFixed(1), ...(await w.stop()), seconds: (Date.now() - t0) / 1000, ...got, alive: r.child.exitCode === null });
    } else if (attack === 'list') {
      const got = await listings(r.url, seeded, 8);
      const statuses = got.map((g) => g.status).join(',');
      const bytes = got.reduce((a, g) => a + g.bytes, 0);
      report(attack, { rssBeforeMiB: +before.toFixed(1), ...(await w.stop()), seconds: (Date.now() - t0) / 1000, statuses, bytes, alive: r.child.exitCode === null });
    } else if (attack === 'mixed') {
      const wsUrl = `${r.url.replace('http', 'ws')}/ws`;
      const [listed, ...replayed] = await Promise.all([listings(r.url, seeded, 6), ...[1, 2, 3, 4].map(() => replays(wsUrl, seeded, 1, 180_000))]);
      report(attack, {
        rssBeforeMiB: +before.toFixed(1),
        ...(await w.stop()),
        seconds: (Date.now() - t0) / 1000,
        statuses: listed!.map((g) => g.status).join(','),
        replays: replayed.map((g) => ({ replayed: g.replayed, errors: g.errors, events: g.events, closed: g.closed })),
        alive: r.child.exitCode === null,
      });
    } else if (attack === 'inflight') {
      const created = await (await fetch(`${r.url}/api/webhooks`, { method: 'POST', body: '{}' })).json();
      const held = await bodiesInFlight(r.port, created.id, 200, 10 * MiB, 10 * MiB - 1);
      const holding = rssMiB(r.child.pid!);
      await new Promise((res) => setTimeout(res, 2000));
      const open = held.open();
      held.release();
      await new Promise((res) => setTimeout(res, 5000));
      const after = r.child.exitCode === null ? rssMiB(r.child.pid!) : NaN;
      // Freed buffers go back to the system when the garbage collector runs, which the next
      // traffic triggers: some ordinary captures, then RSS again.
      for (let i = 0; i < 200; i++) await fetch(`${r.url}/h/${created.id}`, { method: 'POST', body: 'x'.repeat(64 * 1024) });
      await new Promise((res) => setTimeout(res, 5000));
      const afterTraffic = r.child.exitCode === null ? rssMiB(r.child.pid!) : NaN;
      const answered = Object.entries(held.answered.reduce<Record<number, number>>((a, s) => ((a[s] = (a[s] ?? 0) + 1), a), {}));
      report(attack, {
        rssBeforeMiB: +before.toFixed(1),
        rssHoldingMiB: +holding.toFixed(1),
        rssAfterCloseMiB: +after.toFixed(1),
        rssAfterTrafficMiB: +afterTraffic.toFixed(1),
        ...(await w.stop()),
        seconds: (Date.now() - t0) / 1000,
        answered: Object.fromEntries(answered),
        heldOpen: open,
        alive: r.child.exitCode === null,
      });
    } else {
      process.stderr.write(`unknown attack ${attack}; known: replay, list, mixed, inflight\n`);
    }
  } catch (err) {
    report(attack, { error: String(err), ...(await w.stop()), alive: r.child.exitCode === null, tail: r.output().slice(-600) });
  } finally {
    if (r.child.exitCode !== null) report(attack, { exitCode: r.child.exitCode, tail: r.output().slice(-600) });
    await stop(r);
  }
}
