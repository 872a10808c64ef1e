/**
 * connections: 19,000 WebSocket clients (4 processes, each under the 20,000 open-file limit),
 * each joined to one of 1,000 rooms; then one capture per room, which must reach exactly that
 * room's 19 members. Server RSS per socket = (RSS with every socket joined − RSS before) / sockets.
 * Reference, same run: bench/reference.ts holding the same sockets and joins.
 *
 * Fewer where the open-file limit (the hard one: Node raises its soft limit to it) would put
 * hooky past its accept guard (listener.ts), which refuses new connections `acceptReserve`
 * descriptors below the limit: at 20,000 it refuses past 18,976, so the run holds 18,000 (and
 * 600 descriptors more for Postgres, the capture connections and files).
 */
import { acceptReserve, openFileLimit } from '../src/listener.js';
import { call, createWebhooks, jsonBody, keepAlive, sleep } from './support/http.js';
import { startHooky, startReference, type Target } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { fmt, result, type BenchContext, type ScenarioResult } from './support/report.js';
import { startSubscribers } from './support/subscribers.js';

const rooms = 1_000;
const fileLimit = openFileLimit();
const sockets = Math.min(19_000, Math.floor((fileLimit - acceptReserve(fileLimit) - 600) / rooms) * rooms);
const processes = 4;

interface Run {
  opened: number;
  failed: number;
  errors: string[];
  openSeconds: number;
  rssBefore: number;
  rssAfter: number;
  perSocket: number;
  captures: number;
  capturesOk: number;
  exact: number;
  delivered: number;
  wrongRoom: number;
}

const roomName = (tag: string, i: number) => `${tag}-${String(i).padStart(4, '0')}`;

async function measure(label: string, server: Target, tag: string, localAddresses: string[]): Promise<Run> {
  const ids = Array.from({ length: sockets }, (_, i) => roomName(tag, i % rooms));
  const subs = await startSubscribers({ webhookIds: ids, processes, localAddresses, concurrency: 64 });
  try {
    await sleep(1000);
    const rssBefore = server.rss();
    progress(`  ${label}: opening ${fmt.int(sockets)} sockets`);
    const opened = await subs.open(server.wsUrl);
    await sleep(1000);
    const rssAfter = server.rss();
    subs.reset();
    progress(`  ${label}: one capture per room`);
    const agent = keepAlive(32);
    let next = 0;
    let ok = 0;
    const worker = async () => {
      while (next < rooms) {
        const i = next++;
        const a = await call(agent, `${server.url}/h/${roomName(tag, i)}`, 'POST', jsonBody(256, { seq: 0, t: 0 }));
        if (a.status >= 200 && a.status < 300) ok++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    agent.destroy();
    await sleep(1500);
    const rep = await subs.report();
    return {
      opened: opened.ok,
      failed: opened.failed,
      errors: opened.errors,
      openSeconds: opened.ms / 1000,
      rssBefore,
      rssAfter,
      perSocket: (rssAfter - rssBefore) / opened.ok,
      captures: rooms,
      capturesOk: ok,
      exact: rep.subs.filter((s) => s.open && s.received === 1 && s.wrongRoom === 0).length,
      delivered: rep.subs.reduce((a, s) => a + s.received, 0),
      wrongRoom: rep.subs.reduce((a, s) => a + s.wrongRoom, 0),
    };
  } finally {
    progress(`  ${label}: closing`);
    await subs.close();
  }
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const tag = `conn-${Date.now().toString(36)}`;
  const reference = await startReference(ctx.profileDir);
  let ref: Run;
  try {
    ref = await measure('reference', reference, tag, ['127.0.0.3', '127.0.0.4']);
  } finally {
    await reference.stop();
  }
  // The sockets are past the default HOOKY_MAX_CONNECTIONS (10,000): raised, as a user would.
  const server = await startHooky({ databaseUrl: ctx.databaseUrl, cpuProfDir: ctx.profileDir, env: { HOOKY_MAX_CONNECTIONS: '25000' } });
  let hk: Run;
  try {
    await createWebhooks(
      server.url,
      Array.from({ length: rooms }, (_, i) => roomName(tag, i)),
    );
    hk = await measure('hooky', server, tag, ['127.0.0.5', '127.0.0.6']);
  } finally {
    await server.stop();
  }
  progressDone();
  return result(
    'connections',
    started,
    [
      {
        metric: `sockets open and joined (of ${fmt.int(sockets)})`,
        hooky: `${fmt.int(hk.opened)}${hk.failed ? ` (${hk.failed} failed: ${hk.errors[0]})` : ''}`,
        reference: `${fmt.int(ref.opened)}${ref.failed ? ` (${ref.failed} failed: ${ref.errors[0]})` : ''}`,
        target: 'all',
        met: hk.opened === sockets,
      },
      { metric: 'time to open and join all', hooky: fmt.s(hk.openSeconds), reference: fmt.s(ref.openSeconds), target: '', met: null },
      { metric: 'server RSS per socket', hooky: fmt.kb(hk.perSocket), reference: fmt.kb(ref.perSocket), target: '≤ 4 KB', met: hk.perSocket <= 4096 },
      { metric: 'server RSS before → after', hooky: `${fmt.mb(hk.rssBefore)} → ${fmt.mb(hk.rssAfter)}`, reference: `${fmt.mb(ref.rssBefore)} → ${fmt.mb(ref.rssAfter)}`, target: '', met: null },
      {
        metric: `one capture per room (${rooms}) reaching exactly its members`,
        hooky: `${fmt.int(hk.exact)} sockets got exactly theirs; ${fmt.int(hk.capturesOk)} 2xx`,
        reference: `${fmt.int(ref.exact)} sockets got exactly theirs; ${fmt.int(ref.capturesOk)} 2xx`,
        target: `${fmt.int(sockets)}, 0 wrong room`,
        met: hk.exact === sockets && hk.wrongRoom === 0 && hk.capturesOk === rooms,
      },
      { metric: 'delivered to the wrong room', hooky: fmt.int(hk.wrongRoom), reference: fmt.int(ref.wrongRoom), target: '0', met: hk.wrongRoom === 0 },
    ],
    { sockets, rooms, processes, hooky: hk, reference: ref },
  );
}
