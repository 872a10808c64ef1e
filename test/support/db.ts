import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbedded, type Embedded } from '../../src/db/embedded.js';
import { createLogger } from '../../src/log.js';
import postgres from 'postgres';

let embedded: Promise<Embedded> | undefined;
let tempDir: string | undefined;

/**
 * The database every test server uses: DATABASE_URL when set (CI's second pass runs against the
 * machine's PostgreSQL), otherwise one embedded cluster for the whole run, started through
 * hooky's own embedded module in a temporary directory.
 */
export async function testDatabaseUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  embedded ??= (() => {
    tempDir = mkdtempSync(join(tmpdir(), 'hooky-test-'));
    return startEmbedded(tempDir, createLogger('warn'));
  })();
  return (await embedded).url;
}

/** Stops the shared embedded cluster, if one was started. */
export async function stopTestDatabase(): Promise<void> {
  if (!embedded) return;
  await (await embedded).stop();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  embedded = undefined;
}

/**
 * A database of its own on the test cluster, for a test whose server acts on every row it can
 * see (retention): the shared test database may hold other runs' data, even other engineers'.
 */
export async function scratchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = await testDatabaseUrl();
  const name = `hooky_scratch_${randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const u = new URL(base);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
