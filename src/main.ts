import cluster from 'node:cluster';
import { constants as osConstants } from 'node:os';
import { joinPrimary, startPrimary, workerLogger } from './cluster.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './log.js';
import { createServer } from './server.js';

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
  process.exit(1);
}
const log = cluster.isWorker ? workerLogger(createLogger(config.server.logLevel)) : createLogger(config.server.logLevel);

const failed = (err: unknown): never => {
  // Start-up failures are about the environment (database, port, binary): the message says
  // what to do; the stack only helps at debug level.
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined;
  log.error(`start-up failed: ${err instanceof Error ? err.message : String(err)}`, cause ? { cause } : undefined);
  log.debug('start-up failure', { err });
  process.exit(1);
};

/**
 * Runs `start` with SIGTERM and SIGINT held: a signal that arrives before it ends (a replacement
 * worker still loading, embedded Postgres still starting) is returned, to run the same shutdown
 * once there is something to shut down, rather than killing the process half-started. A second
 * signal gives up at once, except in a worker (see the worker's `stop`).
 *
 * `signalEndsStart`: a start that fails after a signal came failed because of it (the primary's,
 * when a Ctrl-C reached its workers too and one stopped before all had started): that is the
 * stop that was asked for, exit 0, not a start-up failure.
 */
async function withSignalsHeld<T>(start: Promise<T>, signalEndsStart = false): Promise<{ value: T; signal?: NodeJS.Signals }> {
  let signal: NodeJS.Signals | undefined;
  const hold = (s: NodeJS.Signals) => {
    if (signal === undefined) {
      signal = s;
      log.info(`${s} during start-up: shutting down once started`);
    } else if (!cluster.isWorker) {
      log.warn(`${s} again: exiting during start-up`);
      process.exit(killedBy(s));
    }
  };
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
  try {
    const value = await start.catch((err: unknown) => {
      if (!signalEndsStart || signal === undefined) return failed(err);
      log.info(`${signal} during start-up: stopped before every worker had started`, { cause: err instanceof Error ? err.message : String(err) });
      process.exit(0);
    });
    return { value, ...(signal ? { signal } : {}) };
  } finally {
    process.off('SIGTERM', hold);
    process.off('SIGINT', hold);
  }
}

let listening: { address: string; url: string; port: number };
let heldSignal: NodeJS.Signals | undefined;
if (config.server.workers > 1 && cluster.isPrimary) {
  // HOOKY_WORKERS: this process starts the workers and serves nothing itself (cluster.ts).
  const { value: service, signal } = await withSignalsHeld(startPrimary(config, log), true);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn(`${signal} again: ending every worker without finishing the shutdown`);
      service.kill();
      return;
    }
    stopping = true;
    log.info(`${signal}: shutting down ${config.server.workers} workers`);
    service.close(signal).then(
      () => service.stopped,
    ).then(
      (status) => {
        log.info('stopped');
        process.exit(status === 0 ? 0 : 1);
      },
      (err: unknown) => {
        log.error('shutdown failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  listening = service;
  heldSignal = signal;
  if (signal) stop(signal);
} else {
  const { value: server, signal } = await withSignalsHeld(createServer(config, log));
  // The shutdown order is the server's (see server.ts); a second signal skips it. A worker's
  // second signal is the primary forwarding what the terminal already sent the whole group:
  // the primary decides when to give up on a worker.
  let stopping = false;
  const stop = (signal: NodeJS.Signals | 'the primary is gone') => {
    if (stopping) {
      if (cluster.isWorker) return;
      log.warn(`${signal} again: exiting without finishing the shutdown`);
      process.exit(killedBy(signal));
    }
    stopping = true;
    log.info(`${signal}: shutting down`);
    server.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error('shutdown failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (cluster.isWorker) {
    joinPrimary({ address: server.address, url: server.url, port: server.port }, server.metrics.registry, () => stop('the primary is gone'));
    log.debug(`worker listening on ${server.address}`, { port: server.port });
  }
  listening = server;
  heldSignal = signal;
  if (signal) stop(signal);
}

// Logged once the signals are handled: whoever reads the listening line may stop hooky at once.
// With workers, the primary says it once for all of them. Not said when a held signal is stopping it.
if (cluster.isPrimary && heldSignal === undefined) {
  if (config.auth.apiToken === undefined && !isLoopback(config.server.host)) {
    log.warn(
      `the REST API and /ws need no token and are reachable on ${listening.address}: anyone who reaches this port can list, read and delete ` +
        'webhooks and their captures. Set HOOKY_API_TOKEN, or HOST=127.0.0.1 to serve this machine only.',
    );
  }
  const everywhere = config.server.host === '0.0.0.0' ? 'every IPv4 address of this machine' : config.server.host === '::' ? 'every address of this machine' : undefined;
  const workers = config.server.workers > 1 ? { workers: config.server.workers } : {};
  log.info(`hooky listening on ${listening.address}${everywhere ? ` (${everywhere}; from here: ${listening.url})` : ''}`, { port: listening.port, ...workers });
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The status a shell gives a process ended by `signal`: 128 + its number (SIGINT 130, SIGTERM 143). */
function killedBy(signal: string): number {
  return 128 + (osConstants.signals[signal as NodeJS.Signals] ?? 0);
}
