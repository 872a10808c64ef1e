/**
 * Runs every test/*.test.ts in one process with uvu, then stops the shared embedded PostgreSQL.
 * `node --import tsx test/index.ts capture` runs the files whose name matches "capture".
 */
import { parse } from 'uvu/parse';
import { run } from 'uvu/run';
import { stopTestDatabase } from './support/db.js';

const pattern = process.argv[2] ? new RegExp(`(${process.argv[2]}).*\\.test\\.ts$`) : /\.test\.ts$/;
const { suites } = await parse(new URL('.', import.meta.url).pathname, pattern);

// uvu prints "Total: N / Passed: M" but no machine-readable summary; keep a copy of what it
// prints so the run can end with the conventional "N passed, N failed" line CI reads.
let printed = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
  printed += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  return write(chunk, ...rest);
}) as typeof process.stdout.write;

await run(suites, { bail: false });
await stopTestDatabase();

// eslint-disable-next-line no-control-regex
const plain = printed.replace(/\x1b\[[0-9;]*m/g, '');
const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
write(`\n${passed} passed, ${total - passed - skipped} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
if (total === 0 || passed + skipped < total) process.exitCode = 1;
process.exit(process.exitCode ?? 0);
