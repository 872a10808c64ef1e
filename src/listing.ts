import type { Sql } from 'postgres';
import * as v from 'valibot';
import { ListQuerySchema, guarded, handler, issuesOf, pageParams } from './api.js';
import type { Auth } from './auth.js';
import { HttpError } from './errors.js';
import { queryParams, send } from './http.js';
import type { Logger } from './log.js';
import type { WebhookResponse } from './store.js';
import type { TemplatedApp } from './uws.js';

export interface ListingOptions {
  /** Base of a webhook's capture `url`, without a trailing slash. */
  publicUrl: () => string;
}

interface Deps {
  auth: Auth;
  sql: Sql;
  log: Logger;
}

/**
 * Requests are counted up to this many per webhook: an index-only count of at most this many
 * entries, whatever retention keeps. Past it the count says "at least" (`requestCountCapped`).
 */
const requestCountCap = 10_000;

// The cursor is the last webhook's creation time in microseconds (Postgres' precision, which an
// ISO string with milliseconds would lose) and its id: `<micros>.<id>`. Ids hold no `.`. It
// still works when that webhook was deleted in the meantime, which a bare id would not.
const cursorPattern = /^(\d{1,20})\.([A-Za-z0-9][A-Za-z0-9_-]{0,63})$/;

const QuerySchema = v.object({
  limit: ListQuerySchema.entries.limit,
  before: v.optional(v.pipe(v.string(), v.regex(cursorPattern, 'before must be the `next` of an earlier page'))),
});

interface Row {
  id: string;
  created_at: Date;
  response: WebhookResponse | null;
  micros: string;
  request_count: number;
}

/** `GET /api/webhooks`: every webhook, newest first, paged like a webhook's requests. */
export function registerListing(uwsApp: TemplatedApp, opts: ListingOptions, { auth, sql, log }: Deps): void {
  const app = guarded(auth, uwsApp);

  app.get(
    '/api/webhooks',
    handler(log, async (ex, req) => {
      const query = v.safeParse(QuerySchema, queryParams(req.getQuery() ?? '', pageParams));
      if (!query.success) throw new HttpError('invalid_request', v.summarize(query.issues), { issues: issuesOf(query.issues) });
      const { limit, before } = query.output;
      const cursor = before === undefined ? undefined : cursorPattern.exec(before)!;
      // The creation time is compared in microseconds since the epoch, the cursor's own unit.
      const rows = await sql<Row[]>`
        select w.id, w.created_at, w.response,
          (extract(epoch from w.created_at) * 1000000)::bigint::text as micros,
          (select count(*)::int from (select 1 from requests r where r.webhook_id = w.id limit ${requestCountCap + 1}) c) as request_count
        from (
          select id, created_at, response from webhooks
          ${
            cursor === undefined
              ? sql``
              : sql`where (created_at, id) < (timestamptz 'epoch' + ${cursor[1]!}::bigint * interval '1 microsecond', ${cursor[2]!})`
          }
          order by created_at desc, id desc
          limit ${limit + 1}
        ) w
        order by w.created_at desc, w.id desc`;
      const more = rows.length > limit;
      const page = more ? rows.slice(0, limit) : rows;
      const last = page[page.length - 1];
      send(
        ex,
        200,
        JSON.stringify({
          webhooks: page.map((w) => ({
            id: w.id,
            url: `${opts.publicUrl()}/h/${w.id}`,
            createdAt: w.created_at.toISOString(),
            response: w.response,
            requestCount: Math.min(w.request_count, requestCountCap),
            requestCountCapped: w.request_count > requestCountCap,
          })),
          next: more && last ? `${last.micros}.${last.id}` : null,
        }),
      );
    }),
  );
}
