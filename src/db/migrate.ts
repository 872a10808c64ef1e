import { readdir, readFile } from 'node:fs/promises';
import type { Sql } from 'postgres';
import type { Logger } from '../log.js';

const dir = new URL('./migrations/', import.meta.url);

// Any constant works; it only has to be the same for every hooky instance on a database.
const lockKey = 0x686f6f6b79; // "hooky"

/**
 * Applies the SQL files in migrations/ in name order, each once, all in one transaction under an
 * advisory lock: a second instance starting at the same moment waits, then finds nothing to do.
 */
export async function migrate(sql: Sql, log: Logger): Promise<void> {
  const files = (await readdir(dir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${lockKey})`;
    await tx`create table if not exists hooky_migrations (
      name text primary key,
      applied_at timestamptz not null default now()
    )`;
    const done = new Set((await tx<{ name: string }[]>`select name from hooky_migrations`).map((r) => r.name));
    for (const name of files) {
      if (done.has(name)) continue;
      await tx.unsafe(await readFile(new URL(name, dir), 'utf8'));
      await tx`insert into hooky_migrations (name) values (${name})`;
      log.info('migration applied', { name });
    }
  });
}
