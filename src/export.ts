import { readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import type { Sql } from 'postgres';
import * as v from 'valibot';
import { guarded, methodNotAllowed } from './api.js';
import type { Auth } from './auth.js';
import { customDefaultType } from './capture.js';
import { HttpError, httpErrorOf } from './errors.js';
import { exchange, queryParams, sendError, statusLine, type Exchange } from './http.js';
import type { Logger } from './log.js';
import { webhookIdPattern, type CapturedRequest } from './protocol.js';
import type { Webhook } from './store.js';
import type { HttpResponse, TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';

export interface ExportOptions {
  /** Base of a webhook's capture `url`, without a trailing slash. */
  publicUrl: () => string;
}

interface Deps {
  auth: Auth;
  sql: Sql;
  webhooks: WebhookCache;
  log: Logger;
}

/**
 * One page read from Postgres: at most this many rows, and rows up to this many payload bytes
 * (always at least one row, however large). The server holds one page being written and the
 * next one being read, plus what uWS has not sent yet of the page before: about 3 MiB.
 */
const pageRows = 1000;
export const pageBytes = 1024 * 1024;

const QuerySchema = v.object({
  format: v.optional(v.picklist(['ndjson', 'har'], 'format must be ndjson or har'), 'ndjson'),
});

const version = packageVersion();

/**
 * `GET /api/webhooks/:id/export?format=ndjson|har`: every request of a webhook, oldest first,
 * streamed. Postgres is read in pages (keyset over (webhook_id, id)), each written as one chunk;
 * when uWS reports backpressure the next write waits for onWritable, so a slow client holds the
 * export back instead of making the server buffer it.
 */
export function registerExport(uwsApp: TemplatedApp, opts: ExportOptions, { auth, sql, webhooks, log }: Deps): void {
  const app = guarded(auth, uwsApp);
  const route = '/api/webhooks/:id/export';

  app.get(route, (res, req) => {
    // The write waiting for the socket to drain, woken by onWritable or by the client leaving.
    let waiting: (() => void) | undefined;
    const wake = () => {
      const w = waiting;
      waiting = undefined;
      w?.();
    };
    const ex = exchange(res, wake);
    const id = req.getParameter(0) ?? '';
    const rawQuery = req.getQuery() ?? '';
    const stream = { started: false };
    // One handler for the whole response. uWS puts back the handler it called after the call,
    // over any registered meanwhile, and a write woken by it may well register the next one
    // within that call (promise continuations run before uWS regains control): a handler per
    // wait would be lost and the export would stall. Returning true: nothing of ours is left to
    // write here; the next write drains what uWS holds.
    res.onWritable(() => (wake(), true));
    const writable = () => new Promise<void>((resolve) => (waiting = resolve));

    const run = async () => {
      const query = v.safeParse(QuerySchema, queryParams(rawQuery, ['format']));
      if (!query.success) throw new HttpError('invalid_request', v.summarize(query.issues));
      const webhook = webhookIdPattern.test(id) ? await webhooks.read(id) : undefined;
      if (!webhook) throw new HttpError('not_found', 'Webhook not found');
      const format = query.output.format;
      // Requests captured after this moment are not part of the export: under a steady stream of
      // captures it would otherwise never end. Ids are time-ordered, so the moment is one id.
      const [newest] = await sql<{ id: string }[]>`select id::text as id from requests where webhook_id = ${id} order by requests.id desc limit 1`;
      const entry = format === 'har' ? harEntry(webhook, opts.publicUrl()) : undefined;

      let after = '00000000-0000-0000-0000-000000000000';
      let first = true;
      const write = async (chunk: string) => {
        if (ex.done) return;
        let ok = true;
        res.cork(() => {
          if (!stream.started) {
            stream.started = true;
            res.writeStatus(statusLine(200));
            res.writeHeader('content-type', format === 'har' ? 'application/json; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
            res.writeHeader('content-disposition', `attachment; filename="hooky-${id}.${format}"`);
            res.writeHeader('cache-control', 'no-store');
          }
          ok = res.write(chunk);
        });
        if (!ok && !ex.done) await writable();
      };

      if (format === 'har') await write(`{"log":{"version":"1.2","creator":{"name":"hooky","version":${JSON.stringify(version)}},"entries":[`);
      // Reads page n+1 while page n is being written.
      let next = newest === undefined ? undefined : readPage(sql, id, after, newest.id);
      while (next !== undefined && !ex.done) {
        const page = await next;
        if (page.length === 0) break;
        after = page[page.length - 1]!.id;
        next = after < newest!.id ? readPage(sql, id, after, newest!.id) : undefined;
        let chunk = '';
        for (const row of page) {
          if (entry === undefined) chunk += `${row.payload}\n`;
          else {
            chunk += `${first ? '' : ','}${JSON.stringify(entry(JSON.parse(row.payload) as CapturedRequest))}`;
            first = false;
          }
        }
        await write(chunk);
      }
      // A read started for a client that went away is still awaited, so that no query is left
      // without a handler.
      if (next !== undefined) await next;
      if (ex.done) return;
      // An empty ndjson export has written nothing yet: its status and headers still go first.
      await write(format === 'har' ? ']}}' : '');
      if (ex.done) return;
      ex.done = true;
      res.cork(() => res.end());
    };

    run().catch((err: unknown) => {
      const answer = httpErrorOf(err, log, 'export', { webhookId: id });
      if (!stream.started) return sendError(ex, answer);
      // Headers and part of the body are gone: only an unfinished chunked body tells the client
      // that the export is incomplete.
      abort(ex, res);
    });
  });

  app.any(route, methodNotAllowed('GET'));
}

function abort(ex: Exchange, res: HttpResponse) {
  if (ex.done) return;
  ex.done = true;
  res.close();
}

/**
 * The next page after `after`, up to `last`: at most pageRows rows and, past the first,
 * pageBytes of payload. The byte count is read from the stored length of each payload
 * (octet_length does not fetch a TOASTed value), so rows past the budget are never fetched.
 */
function readPage(sql: Sql, webhookId: string, after: string, last: string): Promise<{ id: string; payload: string }[]> {
  // postgres.js sends a query once something awaits it; this one is read ahead, so start it now.
  // Its error, if any, reaches the `await` in the export loop; until then this handler keeps
  // Node from reporting it as unhandled.
  const page = sql<{ id: string; payload: string }[]>`
    with chosen as (
      select id, sum(octet_length(payload)) over (order by id rows between unbounded preceding and current row) - octet_length(payload) as ahead
      from requests
      where webhook_id = ${webhookId} and id > ${after}::uuid and id <= ${last}::uuid
      order by id
      limit ${pageRows}
    )
    select r.id::text as id, r.payload
    from chosen c join requests r on r.id = c.id
    where c.ahead < ${pageBytes}
    order by c.id`.execute();
  page.catch(() => undefined);
  return page;
}

interface HarPair {
  name: string;
  value: string;
}

const pairs = (record: Record<string, string | string[]>): HarPair[] =>
  Object.entries(record).flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((v) => ({ name, value: v })));

/**
 * A HAR 1.2 entry per captured request: the request as received (its URL the capture URL), and
 * as response what the webhook is configured to answer, which is what its sender got back.
 * Base64 bodies keep their text in base64 with `_encoding: "base64"` (HAR's postData has no
 * encoding field of its own; custom fields start with `_`).
 */
function harEntry(webhook: Webhook, base: string) {
  const r = webhook.response;
  const responseHeaders: Record<string, string> =
    r === null ? { 'content-type': 'application/json' } : r.headers?.['content-type'] ? { ...r.headers } : { 'content-type': customDefaultType, ...r.headers };
  const status = r?.status ?? 200;
  const delay = r?.delayMs ?? 0;

  return (p: CapturedRequest) => {
    const query = new URLSearchParams();
    for (const { name, value } of pairs(p.queryParams)) query.append(name, value);
    const search = query.size > 0 ? `?${query}` : '';
    const body = r === null ? `{"ok":true,"id":"${p.id}"}` : (r.body ?? '');
    const bodySize = Buffer.byteLength(body);
    const contentType = p.headers['content-type'];
    return {
      startedDateTime: p.timestamp,
      time: delay,
      request: {
        method: p.method,
        url: `${base}/h/${p.webhookId}${p.path}${search}`,
        httpVersion: 'HTTP/1.1',
        cookies: cookies(p.headers.cookie),
        headers: pairs(p.headers),
        queryString: pairs(p.queryParams),
        ...(p.body === null
          ? {}
          : {
              postData: {
                mimeType: contentType ?? 'application/octet-stream',
                text: p.body,
                ...(p.bodyEncoding === 'base64' ? { _encoding: 'base64' } : {}),
              },
            }),
        headersSize: -1,
        bodySize: p.size,
      },
      response: {
        status,
        statusText: STATUS_CODES[status] ?? '',
        httpVersion: 'HTTP/1.1',
        cookies: [],
        headers: pairs(responseHeaders),
        content: { size: bodySize, mimeType: responseHeaders['content-type']!, text: body },
        redirectURL: responseHeaders.location ?? '',
        headersSize: -1,
        bodySize,
      },
      cache: {},
      timings: { send: 0, wait: delay, receive: 0 },
      _requestId: p.id,
      _sourceIp: p.sourceIp,
    };
  };
}

/** `a=1; b=2` as HAR cookies; a part without `=` is skipped, as browsers do. */
function cookies(header: string | undefined): HarPair[] {
  if (header === undefined) return [];
  return header.split(';').flatMap((part) => {
    const eq = part.indexOf('=');
    return eq < 0 ? [] : [{ name: part.slice(0, eq).trim(), value: part.slice(eq + 1).trim() }];
  });
}

/** hooky's version from package.json, one or two folders up (src/ when run by tsx, dist/src/ when built). */
function packageVersion(): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'hooky' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not at this level: try the next one up.
    }
  }
  return 'unknown';
}
