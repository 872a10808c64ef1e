import postgres, { type Sql } from 'postgres';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { startEmbedded } from './embedded.js';

export interface Database {
  sql: Sql;
  /** Where it runs, for the start-up log line (no password). */
  where: string;
  /** Ends the pool, then stops embedded PostgreSQL if we started it. Safe to call twice. */
  close(): Promise<void>;
}

/** DATABASE_URL when set; otherwise an embedded PostgreSQL kept in HOOKY_DATA_DIR. */
export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  const embedded = config.databaseUrl === undefined ? await startEmbedded(config.dataDir, log) : undefined;
  const url = config.databaseUrl ?? embedded!.url;
  const sql = postgres(url, {
    max: config.pgPoolSize,
    // Fail fast when Postgres is gone, so captures get a 503 instead of hanging.
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: 'hooky' },
  });
  let closing: Promise<void> | undefined;
  return {
    sql,
    where: embedded ? `embedded PostgreSQL in ${embedded.dir}` : redact(url),
    close: () =>
      (closing ??= (async () => {
        await sql.end({ timeout: 5 });
        await embedded?.stop();
      })()),
  };
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
