/**
 * Runs every test/*.test.ts in one process with uvu, then stops the shared embedded PostgreSQL.
 * `node --import tsx test/index.ts capture` runs the files whose name matches "capture".
 */
import { parse } from 'uvu/parse';
import { run } from 'uvu/run';
import { stopTestDatabase } from './support/db.js';

const pattern = process.argv[2] ? new RegExp(`${process.argv[2]}.*\\.test\\.ts$`) : /\.test\.ts$/;
const { suites } = await parse(new URL('.', import.meta.url).pathname, pattern);
await run(suites, { bail: false });
await stopTestDatabase();
process.exit(process.exitCode ?? 0);
