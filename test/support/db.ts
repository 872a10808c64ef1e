import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbedded, type Embedded } from '../../src/db/embedded.js';
import { createLogger } from '../../src/log.js';

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
