/**
 * statements: the group-commit INSERT in several shapes, on the same Postgres, same payloads,
 * batches of 100 rows written one after another (as the writer does under load). Reference:
 * the statement hooky shipped with, unnest of three arrays, measured in the same run.
 * Reports rows/s and the CPU each side spends per row (node = this process, which builds and
 * serialises the parameters; postgres = every postgres process).
 */
import { migrate } from '../src/db/migrate.js';
import { newRequestId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { buildPayload } from '../src/payload.js';
import { jsonBody } from './support/http.js';
import { cpuOfCluster } from './support/proc.js';
import { progress, progressDone } from './support/progress.js';
import { result, type BenchContext, type Row, type ScenarioResult } from './support/report.js';
import type { Sql } from 'postgres';

const batch = 100;
const batches = 150;

interface Pending {
  id: string;
  webhookId: string;
  json: string;
}

type Shape = (sql: Sql, rows: Pending[]) => Promise<unknown>;

const copyEscape = (s: string) => s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));

export const shapes: Record<string, Shape> = {
  'unnest(uuid[], text[], text[]::json[]) (shipped)': (sql, rows) => sql`
    insert into requests (id, webhook_id, payload)
    select r.id, r.webhook_id, r.payload
    from unnest(${rows.map((r) => r.id)}::uuid[], ${rows.map((r) => r.webhookId)}::text[], ${rows.map((r) => r.json)}::text[]::json[])
      as r (id, webhook_id, payload)
    where exists (select 1 from webhooks w where w.id = r.webhook_id)
    returning id`,
  'rows from (unnest, unnest, json_array_elements($3::json))': (sql, rows) => sql`
    insert into requests (id, webhook_id, payload)
    select r.id, r.webhook_id, r.payload
    from rows from (unnest(${rows.map((r) => r.id)}::uuid[]), unnest(${rows.map((r) => r.webhookId)}::text[]), json_array_elements(${`[${rows.map((r) => r.json).join(',')}]`}::text::json))
      as r (id, webhook_id, payload)
    where exists (select 1 from webhooks w where w.id = r.webhook_id)
    returning id`,
  'same, count(*) instead of returning id': (sql, rows) => sql`
    with ins as (
      insert into requests (id, webhook_id, payload)
      select r.id, r.webhook_id, r.payload
      from rows from (unnest(${rows.map((r) => r.id)}::uuid[]), unnest(${rows.map((r) => r.webhookId)}::text[]), json_array_elements(${`[${rows.map((r) => r.json).join(',')}]`}::text::json))
        as r (id, webhook_id, payload)
      where exists (select 1 from webhooks w where w.id = r.webhook_id)
      returning 1)
    select count(*)::int as n from ins`,
  'multi-row VALUES ($1,$2,$3), … (300 parameters)': (sql, rows) => {
    const values = rows.map((_, i) => `($${3 * i + 1}::uuid, $${3 * i + 2}::text, $${3 * i + 3}::json)`).join(',');
    return sql.unsafe(
      `insert into requests (id, webhook_id, payload)
       select v.id, v.webhook_id, v.payload from (values ${values}) as v (id, webhook_id, payload)
       where exists (select 1 from webhooks w where w.id = v.webhook_id)
       returning id`,
      rows.flatMap((r) => [r.id, r.webhookId, r.json]),
      { prepare: true },
    );
  },
  'COPY requests FROM STDIN (no exists filter)': async (sql, rows) => {
    const stream = await sql`copy requests (id, webhook_id, payload) from stdin`.writable();
    await new Promise<void>((resolve, reject) => {
      stream.on('error', reject);
      stream.on('finish', resolve);
      stream.end(rows.map((r) => `${r.id}\t${r.webhookId}\t${copyEscape(r.json)}\n`).join(''));
    });
  },
};

function payloads(webhookId: string, n: number): Pending[] {
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
  const webhookId = `stmt-${Date.now().toString(36)}`;
  const { sql } = ctx;
  const pgCpu = () => (ctx.postmasterPid ? cpuOfCluster(ctx.postmasterPid) : NaN);
  await migrate(sql, createLogger('warn'));
  await sql`insert into webhooks (id) values (${webhookId})`;
  const measured: { name: string; rowsPerS: number; nodeUs: number; pgUs: number }[] = [];
  // Two passes in alternating order, best of the two, so neither order nor a checkpoint favours one shape.
  for (const pass of [0, 1]) {
    const names = pass === 0 ? Object.keys(shapes) : Object.keys(shapes).reverse();
    for (const name of names) {
      const data = Array.from({ length: batches }, () => payloads(webhookId, batch));
      const cpu0 = process.cpuUsage();
      const pg0 = pgCpu();
      const t0 = performance.now();
      for (let i = 0; i < batches; i++) {
        await shapes[name]!(sql, data[i]!);
        if (i % 50 === 0) progress(`  ${name}: ${i}/${batches} batches`);
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
  progressDone();
  await sql`delete from webhooks where id = ${webhookId}`;
  const ref = measured[0]!;
  const rows: Row[] = measured.map((m) => ({
    metric: `${m.name}: rows/s; node µs/row; postgres µs/row`,
    hooky: `${Math.round(m.rowsPerS).toLocaleString('en-US')}; ${m.nodeUs.toFixed(1)}; ${m.pgUs.toFixed(1)}`,
    reference: `${Math.round(ref.rowsPerS).toLocaleString('en-US')}; ${ref.nodeUs.toFixed(1)}; ${ref.pgUs.toFixed(1)}`,
    target: `${(m.rowsPerS / ref.rowsPerS).toFixed(2)}× the shipped statement`,
    met: null,
  }));
  return result('statements', started, rows, { batch, batches, measured });
}
