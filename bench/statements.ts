/**
 * statements: the group-commit INSERT against the table designs it was chosen from, on the same
 * Postgres, same payloads, 60-row batches (the size the capture scenario's batches come to)
 * written one after another as the writer does under load. Each design lives in a schema of its
 * own, reached through a connection whose search_path names it. Reference: the design hooky
 * ships (migrations 001–003), measured in the same run; every text-payload design is written
 * through store.insertRequests itself, so only the tables differ.
 * Reports rows/s and the CPU each side spends per row (node = this process, which builds and
 * sends the parameters; postgres = every process of the cluster).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres, { type Sql } from 'postgres';
import { migrate } from '../src/db/migrate.js';
import { newRequestId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { buildPayload } from '../src/payload.js';
import { createStore, type CapturedRow } from '../src/store.js';
import { jsonBody } from './support/http.js';
import { cpuOfCluster, root } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { result, type BenchContext, type Row, type ScenarioResult } from './support/report.js';

const batch = 60;
const batches = 500;
const webhookId = 'bench-statements';

interface Design {
  /** Creates the design's tables in the (empty) schema the connection's search_path names. */
  create(sql: Sql): Promise<unknown>;
  insert(sql: Sql, rows: readonly CapturedRow[]): Promise<unknown>;
}

const init001 = readFileSync(join(root, 'src/db/migrations/001_init.sql'), 'utf8');

// The statement hooky shipped with migration 001: a foreign key checked per row, payloads parsed
// as json.
const jsonArrayInsert = (sql: Sql, rows: readonly CapturedRow[]) => sql`
  insert into requests (id, webhook_id, payload)
  select r.id, r.webhook_id, r.payload
  from rows from (unnest(${rows.map((r) => r.id)}::uuid[]), unnest(${rows.map((r) => r.webhookId)}::text[]),
    json_array_elements(${`[${rows.map((r) => r.json).join(',')}]`}::text::json)) as r (id, webhook_id, payload)
  where exists (select 1 from webhooks w where w.id = r.webhook_id)
  returning id`;

// The statement hooky ships, whatever the table's indexes: every text-payload design is written
// through store.insertRequests itself.
const shipped = (sql: Sql, rows: readonly CapturedRow[]) => createStore(sql).insertRequests(rows);

// The statement of migration 002, before positions (003): webhooks locked once, no counter.
const lean002Insert = (sql: Sql, rows: readonly CapturedRow[]) => sql`
  with live as materialized (
    select id from webhooks where id = any(string_to_array(${webhookId}, E'\n')) for key share
  ), stored as (
    insert into requests (id, webhook_id, payload)
    select r.id::uuid, r.webhook_id, r.payload
    from rows from (
      string_to_table(${rows.map((r) => r.id).join('\n')}, E'\n'),
      string_to_table(${rows.map((r) => r.webhookId).join('\n')}, E'\n'),
      string_to_table(${rows.map((r) => r.json).join('\n')}, E'\n')
    ) as r (id, webhook_id, payload)
    where r.webhook_id in (select id from live)
  )
  select id from live`;

// What bus.ts sends after each batch, with one instance listening as a second one would.
const notified = async (sql: Sql, rows: readonly CapturedRow[]) => {
  const reached = await shipped(sql, rows);
  await sql`select pg_notify('hooky_bench', ${`c bench ${[...reached].map(([w, p]) => `${w} ${p}`).join(' ')}`})`;
};

const webhooksTable = 'create table webhooks (id text primary key, created_at timestamptz not null default now(), response jsonb, position bigint not null default 0)';
// Migration 003's positions, for the designs that build their own requests table.
const positionsTables = `create sequence request_batch_keys;
  create table request_batches (webhook_id text not null, position bigint not null, batch bigint not null, first_id uuid not null, last_id uuid not null, primary key (webhook_id, position));
  create unique index request_batches_batch on request_batches (webhook_id, batch)`;
const init002 = readFileSync(join(root, 'src/db/migrations/002_lean_requests.sql'), 'utf8');

export const designs: Record<string, Design> = {
  'shipped (003): 002 plus a position per webhook and batch, advanced under its lock after the rows are in': {
    create: (sql) => migrate(sql, createLogger('warn')),
    insert: shipped,
  },
  'shipped, then one NOTIFY per batch (bus.ts), one listener': {
    create: async (sql) => {
      await migrate(sql, createLogger('warn'));
      await sql.listen('hooky_bench', () => {});
    },
    insert: notified,
  },
  '002: no foreign key, text payload, string_to_table, webhooks locked once per batch, no positions': {
    create: (sql) => sql.unsafe(`${init001}; ${init002}`),
    insert: lean002Insert,
  },
  '001: foreign key per row, json payload, json_array_elements': {
    create: (sql) => sql.unsafe(init001),
    insert: jsonArrayInsert,
  },
  '001 without the foreign key (json payload kept)': {
    create: (sql) => sql.unsafe(`${init001}; alter table requests drop constraint requests_webhook_id_fkey`),
    insert: jsonArrayInsert,
  },
  'shipped, with one index: primary key (webhook_id, id) and no index on id alone': {
    create: (sql) => sql.unsafe(`${webhooksTable}; ${positionsTables}; create table requests (webhook_id text not null, id uuid not null, payload text not null, batch bigint not null, primary key (webhook_id, id))`),
    insert: shipped,
  },
  'floor: the same rows into a table without any index': {
    create: (sql) => sql.unsafe(`${webhooksTable}; ${positionsTables}; create table requests (id uuid not null, webhook_id text not null, payload text not null, batch bigint not null)`),
    insert: shipped,
  },
};

function payloads(n: number): CapturedRow[] {
  const body = Buffer.from(jsonBody(1024, { event: 'invoice.paid', amount: 4200 }));
  const headers = { host: '127.0.0.1:3000', 'content-type': 'application/json', 'content-length': String(body.length), 'user-agent': 'bench' };
  return Array.from({ length: n }, () => {
    const id = newRequestId();
    const { json } = buildPayload(id, webhookId, { method: 'POST', path: '/', headers, rawQuery: '', sourceIp: '127.0.0.1' }, body, new Date());
    return { id, webhookId, json };
  });
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const started = Date.now();
  const pgCpu = () => (ctx.postmasterPid ? cpuOfCluster(ctx.postmasterPid) : NaN);
  const names = Object.keys(designs);
  const schema = (name: string) => `bench_statements_${names.indexOf(name)}`;
  const conns = new Map<string, Sql>();
  const measured: { name: string; rowsPerS: number; nodeUs: number; pgUs: number }[] = [];
  try {
    for (const name of names) {
      await ctx.sql.unsafe(`drop schema if exists ${schema(name)} cascade; create schema ${schema(name)}`);
      const sql = postgres(ctx.databaseUrl, { max: 1, onnotice: () => {}, connection: { search_path: schema(name) } });
      conns.set(name, sql);
      await designs[name]!.create(sql);
      await sql`insert into webhooks (id) values (${webhookId})`;
    }
    // Two passes in opposite orders, best of the two, so neither order nor a checkpoint favours one.
    for (const pass of [0, 1]) {
      for (const name of pass === 0 ? names : [...names].reverse()) {
        const sql = conns.get(name)!;
        const data = Array.from({ length: batches }, () => payloads(batch));
        await designs[name]!.insert(sql, payloads(batch)); // warm: prepared statement, plan
        const cpu0 = process.cpuUsage();
        const pg0 = pgCpu();
        const t0 = performance.now();
        for (let i = 0; i < batches; i++) {
          await designs[name]!.insert(sql, data[i]!);
          if (i % 50 === 0) progress(`  pass ${pass + 1}/2 ${name.slice(0, 40)}: ${i}/${batches} batches`);
        }
        const s = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const n = batch * batches;
        const m = { name, rowsPerS: n / s, nodeUs: (cpu.user + cpu.system) / n, pgUs: ((pgCpu() - pg0) * 1e6) / n };
        const prev = measured.find((x) => x.name === name);
        if (!prev) measured.push(m);
        else if (m.rowsPerS > prev.rowsPerS) Object.assign(prev, m);
      }
    }
  } finally {
    for (const sql of conns.values()) await sql.end({ timeout: 5 });
    for (const name of names) await ctx.sql.unsafe(`drop schema if exists ${schema(name)} cascade`);
  }
  progressDone();
  measured.sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
  const ref = measured[0]!;
  const rows: Row[] = measured.map((m) => ({
    metric: `${m.name}: rows/s; node µs/row; postgres µs/row`,
    hooky: `${Math.round(m.rowsPerS).toLocaleString('en-US')}; ${m.nodeUs.toFixed(1)}; ${m.pgUs.toFixed(1)}`,
    reference: `${Math.round(ref.rowsPerS).toLocaleString('en-US')}; ${ref.nodeUs.toFixed(1)}; ${ref.pgUs.toFixed(1)}`,
    target: `${(m.rowsPerS / ref.rowsPerS).toFixed(2)}× the shipped design`,
    met: null,
  }));
  return result('statements', started, rows, { batch, batches, measured });
}
