import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';

/** The nats-server binary on PATH or where Debian puts it (/usr/sbin, not on a user's PATH). */
export function findNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin', '/usr/bin'];
  for (const dir of dirs) {
    const file = join(dir, 'nats-server');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not in this directory: the next one.
    }
  }
  return undefined;
}

/** A free TCP port on 127.0.0.1 (nats-server is given fixed ports, kept across a restart). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface TestNats {
  /** nats://127.0.0.1:<port> */
  url: string;
  /** http://127.0.0.1:<port> of its monitoring endpoints (/connz, /subsz). */
  monitor: string;
  /** SIGKILL: the connections drop without a word, as when the host dies. */
  kill(): Promise<void>;
  /** Starts it again on the same ports. */
  start(): Promise<void>;
  /** Stops it; safe to call twice. */
  close(): Promise<void>;
}

/** A nats-server of this test's own, on free ports, started and ready; `args` are added to its own. */
export async function startNats(binary: string, args: readonly string[] = []): Promise<TestNats> {
  const port = await freePort();
  const httpPort = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function start() {
    const proc = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-m', String(httpPort), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    exited = new Promise((r) => proc.once('exit', () => r()));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server not ready within 10 s:\n${out}`)), 10_000);
      proc.stderr!.on('data', (d) => {
        out += d;
        if (out.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${out}`));
      });
    });
  }

  async function kill() {
    child?.kill('SIGKILL');
    child = undefined;
    await exited;
  }

  await start();
  return { url: `nats://127.0.0.1:${port}`, monitor: `http://127.0.0.1:${httpPort}`, kill, start, close: kill };
}

export interface Connz {
  connections: { cid: number; name?: string; subscriptions_list?: string[] }[];
}

/** The server's client connections with their subscriptions (the monitoring endpoint /connz). */
export async function connections(monitor: string): Promise<Connz['connections']> {
  return ((await (await fetch(`${monitor}/connz?subs=1`)).json()) as Connz).connections;
}
