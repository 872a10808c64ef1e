import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { LIBUS_LISTEN_EXCLUSIVE_PORT, listenOn, uws, type TemplatedApp, type us_listen_socket } from './uws.js';

export interface Listener {
  /** The port it is bound to (the one the system picked for port 0). */
  readonly port: number;
  /** Stops accepting and stops watching open files. Safe to call twice. */
  close(): void;
}

export interface ListenOptions {
  host: string;
  port: number;
  /**
   * Share the port with other processes (SO_REUSEPORT), for workers of one service that hooky
   * starts itself. Off, a port already in use is refused instead of silently splitting traffic.
   */
  share: boolean;
}

/**
 * Listens, and stops accepting before the process runs out of file descriptors.
 *
 * At the open-file limit, uSockets' accept loop spins: the listening socket stays readable,
 * `accept()` fails with EMFILE, and uSockets ignores the error ("start timer here" in its
 * loop.c) and polls again, so the process burns a whole core while the connections already
 * open still work. Node cannot tell us about EMFILE inside uWS, so the open descriptors are
 * counted instead (/proc/self/fd, every second, every 100 ms once past half the limit): past
 * `limit − reserve` the listening socket is closed (new clients are refused at once rather than
 * left hanging), and it listens again on the same port once the count is back under
 * `limit − 2 × reserve`. The reserve keeps descriptors for Postgres reconnects and files.
 */
export async function listen(app: TemplatedApp, options: ListenOptions, deps: { log: Logger; metrics: Metrics }): Promise<Listener> {
  const { log, metrics } = deps;
  const flags = options.share ? 0 : LIBUS_LISTEN_EXCLUSIVE_PORT;
  const bind = (port: number) => new Promise<us_listen_socket | false>((resolve) => listenOn(app, options.host, port, flags, resolve));

  let socket = await bind(options.port);
  if (!socket) throw new Error(await whyNotListening(options.host, options.port));
  const port = uws.us_socket_local_port(socket);
  if (options.port === 0) {
    // uSockets sets SO_REUSEADDR only for a port it is given: bound to port 0, the connections
    // it accepts would keep a new listening socket off that port after a pause. So the port
    // the system picked is taken again by number.
    uws.us_listen_socket_close(socket);
    socket = await bind(port);
    if (!socket) throw new Error(await whyNotListening(options.host, port));
  }

  const limit = openFileLimit();
  const reserve = acceptReserve(limit);
  const high = limit - reserve;
  const low = limit - 2 * reserve;
  // Under waves of connections a pause and a resume happen again and again: each is said once.
  let warned = false;
  let resumed = false;
  let rebindFailed = false;
  let rebinding = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  const check = async () => {
    const open = openFiles(limit);
    if (open === undefined) return log.debug('cannot count open files (no /proc/self/fd): the accept guard is off');
    if (socket && open >= high) {
      uws.us_listen_socket_close(socket);
      socket = false;
      metrics.acceptPauses.inc();
      (warned ? log.debug : log.warn)(
        `open files at ${open} of the limit ${limit}: not accepting new connections until some close ` +
          '(raise the limit: `ulimit -n`, systemd LimitNOFILE, docker --ulimit nofile; see README, Operations)',
        { open, limit },
      );
      warned = true;
    } else if (!socket && !rebinding && !closed && open <= low) {
      rebinding = true;
      const again = await bind(port);
      rebinding = false;
      if (closed) {
        if (again) uws.us_listen_socket_close(again);
      } else if (again) {
        socket = again;
        (resumed ? log.debug : log.info)(`open files back at ${open} of ${limit}: accepting connections again`, { open, limit });
        resumed = true;
        rebindFailed = false;
      } else if (!rebindFailed) {
        // Retried at every check; said once until it succeeds.
        log.error(`could not listen on port ${port} again: ${await whyNotListening(options.host, port)}`);
        rebindFailed = true;
      }
    }
    schedule(open);
  };
  const schedule = (open: number) => {
    if (closed) return;
    timer = setTimeout(check, open > limit / 2 ? 100 : 1000);
    timer.unref();
  };
  if (Number.isFinite(limit)) schedule(0);

  return {
    port,
    close() {
      closed = true;
      clearTimeout(timer);
      if (socket) uws.us_listen_socket_close(socket);
      socket = false;
    },
  };
}

/** Descriptors kept free under `limit`: past `limit − reserve` open, new connections are refused. */
export const acceptReserve = (limit: number) => Math.min(1024, Math.max(32, Math.floor(limit / 16)));

/** The soft limit on open files (Node raises it to the hard limit at start), or Infinity. */
export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft && /^\d+$/.test(soft) ? Number(soft) : Infinity;
  } catch {
    // Not Linux: no /proc. The guard stays off.
    return Infinity;
  }
}

/** Descriptors open now; `limit` when there is none left to count them with; undefined without /proc. */
function openFiles(limit: number): number | undefined {
  try {
    // The directory handle readdir opens is in the listing too.
    return readdirSync('/proc/self/fd').length - 1;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE' ? limit : undefined;
  }
}

/** uWS only says false; ask the system why, with node's own listen on the same address. */
function whyNotListening(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE')
        resolve(`port ${port} on ${host} is already in use by another process (another hooky?): stop it, or choose another PORT`);
      else if (err.code === 'EADDRNOTAVAIL') resolve(`${host} is not an address of this machine: check HOST`);
      else if (err.code === 'EACCES') resolve(`not allowed to listen on port ${port} (ports below 1024 need privileges): choose another PORT`);
      else resolve(`could not listen on ${host}:${port} (${err.code ?? err.message})`);
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(`could not listen on ${host}:${port}`)));
  });
}
