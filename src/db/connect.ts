import { join, resolve } from 'node:path';
import postgres, { type Sql } from 'postgres';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { startEmbedded, type Embedded } from './embedded.js';
import { isRefusedSetting, isWrongPassword } from './failure.js';

export interface Database {
  sql: Sql;
  /** Where it runs, for the start-up log line (no password). */
  where: string;
  /**
   * One more connection beside the pool, with the same settings and `application_name`
   * `hooky <name>`: for LISTEN (bus.ts), which holds its connection for good. Ended by its user.
   */
  // Options as postgres.js reads them; its typings lack some (onnotify).
  dedicated(name: string, extra: Record<string, unknown>): Sql;
  /**
   * Ends the pool, giving queries still out `timeoutS` seconds (5 by default), then stops embedded
   * PostgreSQL if we started it. Safe to call twice.
   */
  close(timeoutS?: number): Promise<void>;
}

/**
 * Every statement hooky sends is prepared once per connection (postgres.js) and run with the
 * same shape of parameters, against indexes that serve any of their values: a plan made once
 * serves them all. Left to decide, Postgres plans the relay's and replay's reads afresh on every
 * run (their generic plan's estimate, with no LIMIT known, looks dearer than a custom one), and
 * that planning was most of what a fill cost: a one-batch fill on a webhook of 2,000 requests
 * took 962 µs and 585 µs of Postgres CPU, 271 µs and 105 µs with the plan kept (docs/scaling.md).
 */
const planSettings = { plan_cache_mode: 'force_generic_plan' };

/** DATABASE_URL when set; otherwise an embedded PostgreSQL kept in HOOKY_DATA_DIR. */
export async function openDatabase(opts: Config['db'], log: Logger): Promise<Database> {
  const embedded = opts.url === undefined ? await startEmbedded(opts.dataDir, log) : undefined;
  const { url, socket } = socketOf(opts.url ?? embedded!.url);
  const options = {
    ...socket,
    // Fail fast when Postgres is gone, so captures get a 503 instead of hanging.
    connect_timeout: 5,
    // postgres.js waits (0.5–1) × min(3^failures / 100, 20) s before reconnecting, the failures
    // counted over the whole pool since the last success: after a few seconds of outage hooky
    // would stay down for up to 20 s after Postgres is back. Capped at 1 s instead.
    backoff: reconnectDelay,
    onnotice: () => {},
  };
  const pool = (settings: Record<string, string>) => postgres(url, { ...options, max: opts.poolSize, connection: { application_name: 'hooky', ...settings } });
  let sql = pool(planSettings);
  if (embedded) await passwordTaken(sql, embedded, opts.dataDir);
  else if (await refusesPlanSettings(sql)) {
    log.warn(
      'the database refuses plan_cache_mode at connect (a pooler such as PgBouncer): running without it, so Postgres plans some reads anew on every run; ' +
        "to keep the plans, set it on the server for hooky's user: ALTER ROLE <user> SET plan_cache_mode = force_generic_plan",
    );
    sql = pool({});
  }
  let closing: Promise<void> | undefined;
  return {
    sql,
    where: embedded ? `embedded PostgreSQL in ${embedded.dir}` : redact(url),
    dedicated: (name, extra) => postgres(url, { ...options, max: 1, connection: { application_name: `hooky ${name}` }, ...extra } as postgres.Options<never>),
    close: (timeoutS = 5) =>
      (closing ??= (async () => {
        await sql.end({ timeout: timeoutS });
        await embedded?.stop();
      })()),
  };
}

/**
 * Whether the first connection was refused for its plan setting. Any other failure is left to
 * the queries that follow, as without this check (the migrations report an unreachable database).
 */
async function refusesPlanSettings(sql: Sql): Promise<boolean> {
  try {
    await sql`select 1`;
    return false;
  } catch (err) {
    if (!isRefusedSetting(err)) return false;
    await sql.end({ timeout: 1 });
    return true;
  }
}

/**
 * The embedded cluster's password lives in HOOKY_DATA_DIR, its data maybe elsewhere (as root,
 * `pg-location`): a folder remade beside data that outlived it holds a password the data never
 * had. Said as that, not as Postgres's bare "password authentication failed"; stopped, not left running.
 */
async function passwordTaken(sql: Sql, embedded: Embedded, dataDir: string): Promise<void> {
  try {
    await sql`select 1`;
  } catch (err) {
    await sql.end({ timeout: 1 });
    await embedded.stop();
    if (!isWrongPassword(err)) throw err;
    const root = resolve(dataDir);
    const fresh = embedded.dir.startsWith(`${root}/`)
      ? `move ${embedded.dir} away to start a new database`
      : `remove ${join(root, 'pg-location')} to start a new database`;
    throw new Error(
      `The embedded PostgreSQL in ${embedded.dir} does not take the password in ${join(root, 'pg-password')}, which was made after its data: ` +
        `put back the pg-password made with it, or ${fresh}.`,
      { cause: err },
    );
  }
}

/**
 * libpq's way to name a Unix socket in a URL, `?host=/run/postgresql` (and `?port=`), as
 * `postgresql:///hooky?host=/var/run/postgresql`: postgres.js reads a socket directory only from
 * its `host` option and would send either parameter to the server as a setting, which refuses it.
 */
export function socketOf(url: string): { url: string; socket?: { host: string; port?: number } } {
  const u = new URL(url);
  const host = u.searchParams.get('host');
  if (host === null || !host.startsWith('/')) return { url };
  const port = u.searchParams.get('port') ?? u.port;
  u.searchParams.delete('host');
  u.searchParams.delete('port');
  return { url: u.toString(), socket: { host, ...(port ? { port: Number(port) } : {}) } };
}

/** Seconds before reconnect attempt `failures`: 50 ms doubling up to 1 s, with jitter. */
export const reconnectDelay = (failures: number) => (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** failures, 1);

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
