/**
 * Runs every test/*.test.ts in one process with uvu, then stops the shared embedded PostgreSQL.
 * `node --import tsx test/index.ts capture` runs the files whose name matches "capture".
 */
import { parse } from 'uvu/parse';
import { stopTestDatabase } from './support/db.js';

const pattern = process.argv[2] ? new RegExp(`(${process.argv[2]}).*\\.test\\.ts$`) : /\.test\.ts$/;
const { suites } = await parse(new URL('.', import.meta.url).pathname, pattern);

/** What uvu 0.5.6's runner of one suite resolves with: errors (or true), passed, skipped, total run. */
type SuiteResult = [errors: string | true, passed: number, skipped: number, total: number];
type Queued = () => Promise<SuiteResult>;
const uvuGlobals = globalThis as unknown as { UVU_DEFER: number; UVU_INDEX: number; UVU_QUEUE: [string | null, ...Queued[]][] };

// What uvu/run's `run` does, with one step between importing the files and running them: each
// suite's runner is wrapped to add up the counts it returns, since `exec` returns none. With
// UVU_DEFER set, a suite's `.run()` only queues its runner (one group per file, its name first).
uvuGlobals.UVU_DEFER = 1;
const uvu = await import('uvu');
for (const [index, file] of suites.entries()) {
  uvuGlobals.UVU_INDEX = index;
  uvuGlobals.UVU_QUEUE.push([file.name]);
  await import(`file://${file.file}`);
}
const count = { passed: 0, skipped: 0, total: 0 };
for (const group of uvuGlobals.UVU_QUEUE) {
  for (let i = 1; i < group.length; i++) {
    const runSuite = group[i] as Queued;
    group[i] = async () => {
      const result = await runSuite();
      count.passed += result[1];
      count.skipped += result[2];
      count.total += result[3];
      return result;
    };
  }
}
await uvu.exec(false);
await stopTestDatabase();

const failed = count.total - count.passed;
process.stdout.write(`\n${count.passed} passed, ${failed} failed${count.skipped ? `, ${count.skipped} skipped` : ''}\n`);
if (count.total === 0 || failed > 0) process.exitCode = 1;
process.exit(process.exitCode ?? 0);
