import cluster, { type Worker } from 'node:cluster';
import postgres from 'postgres';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Config } from './config.js';
import { startEmbedded, type Embedded } from './db/embedded.js';
import { migrate } from './db/migrate.js';
import type { Logger } from './log.js';
import { createSiblingRouter, primaryEnd, sendOver } from './siblings.js';

/**
 * `HOOKY_WORKERS=N`: one primary process and N workers, each its own uWS app on the same port.
 *
 * node:cluster rather than bare child_process: it gives each worker an IPC channel with
 * lifecycle events (`exit`, `disconnect`), forks the same entry point with the same execArgv
 * (so `tsx` in development and `dist/` in production both work), and prom-client's
 * AggregatorRegistry, which sums the workers' metrics, is built on it. Its own handle sharing is
 * not used: uWS opens its own listening socket with SO_REUSEPORT (HOOKY_SHARE_PORT, set here for
 * the workers only) and the kernel spreads new connections over the workers.
 *
 * The primary serves nothing itself. It starts the embedded PostgreSQL when DATABASE_URL is
 * unset, runs the migrations once, forks the workers with the DATABASE_URL, restarts a worker
 * that dies (with backoff), answers the workers' requests for the service's metrics, hands on
 * the workers' batches for the rooms other workers serve (siblings.ts), and on SIGTERM or
 * SIGINT forwards the signal, waits for every worker to finish its own shutdown
 * (server.ts), then stops the embedded PostgreSQL.
 */

/** Messages over the IPC channel between a worker and the primary. */
type Message =
  | { type: 'hooky:listening'; port: number; url: string; address: string }
  | { type: 'hooky:metrics-request'; id: number }
  | { type: 'hooky:metrics'; id: number; text?: string; error?: string };

export interface Service {
  readonly port: number;
  readonly url: string;
  readonly address: string;
  /** Forwards `signal` to every worker, waits for all to exit, stops embedded Postgres. Safe to call twice. */
  close(signal?: NodeJS.Signals): Promise<void>;
  /** Ends every worker at once (SIGKILL): a second signal to the primary. */
  kill(): void;
  /** Resolves with the exit status once the service has stopped: 0 when every worker stopped cleanly. */
  readonly stopped: Promise<number>;
}

const backoff = { firstMs: 250, maxMs: 30_000, /** A worker up this long resets its slot's backoff. */ stableMs: 30_000 };
const metricsTimeoutMs = 5_000;

/** Starts the service's workers; resolves once every one of them listens. */
export async function startPrimary(config: Config, log: Logger): Promise<Service> {
  const embedded = config.db.url === undefined ? await startEmbedded(config.db.dataDir, log) : undefined;
  const databaseUrl = config.db.url ?? embedded!.url;
  try {
    const sql = postgres(databaseUrl, { max: 1, connect_timeout: 5, onnotice: () => {}, connection: { application_name: 'hooky' } });
    try {
      await migrate(sql, log);
    } finally {
      await sql.end({ timeout: 5 });
    }
  } catch (err) {
    await embedded?.stop();
    throw err;
  }

  const aggregator = new AggregatorRegistry();
  // The workers' batches for rooms another worker serves (siblings.ts).
  const siblings = createSiblingRouter((id, message) => {
    const worker = cluster.workers?.[id];
    if (worker) sendOver(worker, message);
  });
  cluster.on('message', (worker: Worker, message: Message) => {
    if (siblings.message(worker.id, message)) return;
    if (message?.type !== 'hooky:metrics-request') return;
    const reply = (m: Message) => sendOver(worker, m);
    aggregator.clusterMetrics().then(
      (text) => reply({ type: 'hooky:metrics', id: message.id, text }),
      (err: Error) => reply({ type: 'hooky:metrics', id: message.id, error: err.message }),
    );
  });

  let port = config.server.port;
  /** Until every worker has listened once, a worker that exits fails the start instead of being replaced. */
  let started = false;
  let abortStart: (err: Error) => void = () => {};
  const startAborted = new Promise<never>((_, reject) => (abortStart = reject));
  startAborted.catch(() => {}); // observed by the start-up below, or never needed
  let stopping = false;
  const slots = Array.from({ length: config.server.workers }, () => ({ failures: 0, worker: undefined as Worker | undefined, restart: undefined as NodeJS.Timeout | undefined }));
  /** Whether a worker ended its shutdown with a status other than 0. */
  let unclean = false;
  let stopSignal: NodeJS.Signals | undefined;
  let allExited: () => void = () => {};
  const exitedAll = new Promise<void>((r) => (allExited = r));
  const running = () => slots.some((s) => s.worker !== undefined);

  /** Forks the worker of `slot`; resolves with what it listens on, rejects if it exits first. */
  function fork(slot: (typeof slots)[number]): Promise<Extract<Message, { type: 'hooky:listening' }>> {
    // PORT=0 picks a port once, in the first worker; every other worker shares that one.
    const worker = cluster.fork({ DATABASE_URL: databaseUrl, PORT: String(port), HOOKY_SHARE_PORT: '1' });
    slot.worker = worker;
    const born = Date.now();
    return new Promise((resolve, reject) => {
      let listening = false;
      worker.on('message', (message: Message) => {
        if (message?.type !== 'hooky:listening' || listening) return;
        listening = true;
        // Only now: its bus listens to the channel once its server is up.
        siblings.joined(worker.id);
        log.debug('worker listening', { worker: worker.id, pid: worker.process.pid });
        resolve(message);
      });
      // Anything else its process reports as an error (a signal that could not be sent, say) is
      // logged: with no listener, Node would throw it in the primary. Its exit is handled below.
      worker.on('error', (err) => log.warn(`worker ${worker.id}: ${err.message}`, { worker: worker.id, pid: worker.process.pid }));
      worker.on('exit', (code, signal) => {
        slot.worker = undefined;
        siblings.left(worker.id);
        if (!listening) reject(new Error(`worker ${worker.id} exited (${signal ?? `code ${code}`}) before it listened`));
        if (!started) return abortStart(new Error(`worker ${worker.id} exited (${signal ?? `code ${code}`}) during start-up`));
        if (stopping) {
          // One that had not listened yet and ended by the shutdown's own signal (forked so
          // recently it had no handler) had nothing to finish: that is a clean stop too.
          if (code !== 0 && !(signal === stopSignal && !listening)) unclean = true;
          log.debug('worker stopped', { worker: worker.id, pid: worker.process.pid, code, signal });
          if (!running()) allExited();
          return;
        }
        slot.failures = Date.now() - born >= backoff.stableMs ? 0 : slot.failures + 1;
        const delayMs = Math.min(backoff.maxMs, backoff.firstMs * 2 ** Math.max(0, slot.failures - 1));
        log.error(`worker ${worker.id} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}): starting another in ${delayMs} ms`, {
          worker: worker.id,
          pid: worker.process.pid,
          code,
          signal,
          restartInMs: delayMs,
        });
        // Not unref'd: with every worker down, this timer is what keeps the primary running.
        slot.restart = setTimeout(() => {
          if (stopping) return;
          fork(slot).then(
            (m) => log.info(`worker restarted on port ${m.port}`, { worker: slot.worker?.id, pid: slot.worker?.process.pid }),
            // Its exit handler has scheduled the next attempt already.
            (err: Error) => log.debug(err.message),
          );
        }, delayMs);
      });
    });
  }

  let first: Extract<Message, { type: 'hooky:listening' }>;
  try {
    first = await Promise.race([fork(slots[0]!), startAborted]);
    port = first.port;
    await Promise.race([Promise.all(slots.slice(1).map(fork)), startAborted]);
    started = true;
  } catch (err) {
    stopping = true;
    const left = slots.flatMap((s) => (s.worker ? [s.worker] : []));
    for (const w of left) w.process.kill('SIGKILL');
    await Promise.all(left.map((w) => (w.isDead() ? undefined : new Promise((r) => w.once('exit', r)))));
    await embedded?.stop();
    throw err;
  }

  let closing: Promise<void> | undefined;
  let stopped: (status: number) => void = () => {};
  const stoppedPromise = new Promise<number>((r) => (stopped = r));
  async function shutdown(signal: NodeJS.Signals) {
    stopping = true;
    stopSignal = signal;
    for (const s of slots) clearTimeout(s.restart);
    // Each worker runs the documented shutdown order of server.ts on its own.
    for (const s of slots) s.worker?.process.kill(signal);
    if (running()) await exitedAll;
    await embedded?.stop();
    stopped(unclean ? 1 : 0);
  }
  return {
    port,
    url: first.url,
    address: first.address,
    close: (signal = 'SIGTERM') => (closing ??= shutdown(signal)),
    kill() {
      stopping = true;
      for (const s of slots) clearTimeout(s.restart);
      for (const s of slots) s.worker?.process.kill('SIGKILL');
    },
    stopped: stoppedPromise,
  };
}

/**
 * The worker's side: tells the primary it listens, makes `/metrics` describe the whole service,
 * and shuts the worker down if the primary is gone (its IPC channel closed), so no worker is
 * left holding the port.
 */
export function joinPrimary(listening: { port: number; url: string; address: string }, registry: Registry, onOrphaned: () => void): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructed for its side effect: in a worker, it answers the primary's requests for metrics.
  new AggregatorRegistry();
  // node:cluster's own handler exits a worker at once when its channel closes unexpectedly
  // (lib/internal/cluster/child.js: unless `exitedAfterDisconnect`), which would skip the shutdown
  // order: clients would get no `disconnect` and a capture in flight no answer. Marked as an
  // expected disconnect, the worker runs its own shutdown instead.
  if (cluster.worker) cluster.worker.exitedAfterDisconnect = true;
  process.on('disconnect', onOrphaned);
  send({ type: 'hooky:listening', ...listening });
}

const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
let nextId = 0;
let answering = false;

/** In a worker: the service's metrics, every worker's summed by the primary. */
export function serviceMetrics(): Promise<string> {
  if (!answering) {
    answering = true;
    process.on('message', (message: Message) => {
      if (message?.type !== 'hooky:metrics') return;
      const p = pending.get(message.id);
      if (!p) return;
      pending.delete(message.id);
      clearTimeout(p.timer);
      if (message.text !== undefined) p.resolve(message.text);
      else p.reject(new Error(`the primary could not gather the workers' metrics: ${message.error}`));
    });
  }
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error('the primary did not answer for the metrics'));
    }, metricsTimeoutMs + 1000);
    pending.set(id, { resolve, reject, timer });
    if (!send({ type: 'hooky:metrics-request', id })) {
      pending.delete(id);
      clearTimeout(timer);
      reject(new Error('the primary is gone'));
    }
  });
}

/** False when the channel to the primary is closed (a full channel still queues the message). */
const send = (message: Message): boolean => sendOver(primaryEnd, message);

/** Tags every line a worker logs with its number and pid, so the interleaved lines can be told apart. */
export function workerLogger(log: Logger): Logger {
  const tag = { worker: cluster.worker?.id, pid: process.pid };
  const at = (f: Logger['info']) => (message: string, fields?: Record<string, unknown>) => f(message, { ...tag, ...fields });
  return { debug: at(log.debug), info: at(log.info), warn: at(log.warn), error: at(log.error) };
}
