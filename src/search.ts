import type { PendingQuery, Row, Sql } from 'postgres';
import * as v from 'valibot';
import { issuesOf } from './api.js';
import { HttpError } from './errors.js';
import { queryParams } from './http.js';

export interface SearchOptions {
  /** Requests one filtered page examines at most, newest first, before it answers. */
  scanRows: number;
}

/** What a filtered listing matches; every given part must match. */
export interface Filter {
  /** Upper case; compared exactly. */
  method?: string;
  /** A substring of `path`, case-insensitive. */
  path?: string;
  /** A header by its (lower-case) name, and a substring of its value, case-insensitive. */
  header?: { name: string; value?: string };
  /** Text in the body: case-insensitive in a UTF-8 body, byte-exact in a base64 one. */
  q?: string;
}

const filterNames = ['method', 'path', 'header', 'q'] as const;

// Postgres text cannot hold NUL; every other character may be searched for.
const text = (name: string, max: number) =>
  v.pipe(v.string(), v.maxLength(max, `${name} must be at most ${max} characters`), v.regex(/^[^\0]*$/, `${name} must not contain NUL`));

const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const FilterSchema = v.object({
  method: v.optional(v.pipe(v.string(), v.regex(token, 'method must be an HTTP method such as POST'), v.maxLength(32), v.toUpperCase())),
  path: v.optional(text('path', 2048)),
  header: v.optional(
    v.pipe(
      text('header', 8192),
      v.transform((s) => {
        const colon = s.indexOf(':');
        return colon < 0 ? { name: s } : { name: s.slice(0, colon), value: s.slice(colon + 1) };
      }),
      v.check((h) => token.test(h.name) && h.name.length <= 256, 'header must be a header name, or name:value'),
      v.transform((h) => ({ ...h, name: h.name.toLowerCase() })),
    ),
  ),
  q: v.optional(text('q', 1024)),
});

/**
 * Filters on a webhook's request listing: `method`, `path`, `header` and `q` in the query string,
 * answered by Postgres over every stored request of the webhook.
 *
 * A page never scans without bound: it examines at most `scanRows` requests, newest first from
 * `before`, and returns the matches among them. When fewer than `limit` matched but older requests
 * remain, `next` is the oldest request examined, so a page can be short, even empty, with a
 * `next`: the caller keeps following `next` until it is null. Payloads are parsed by Postgres one
 * row at a time as the index is walked; nothing but the page's own rows comes back.
 */
export function createSearch(sql: Sql, opts: SearchOptions) {
  const conditions = (f: Filter): PendingQuery<Row[]>[] => {
    const c: PendingQuery<Row[]>[] = [];
    if (f.method !== undefined) c.push(sql`p.method = ${f.method}`);
    if (f.path !== undefined) c.push(sql`strpos(lower(p.path), lower(${f.path})) > 0`);
    if (f.header !== undefined) {
      c.push(
        f.header.value === undefined
          ? sql`p.headers -> ${f.header.name}::text is not null`
          : sql`strpos(lower(p.headers ->> ${f.header.name}::text), lower(${f.header.value})) > 0`,
      );
    }
    if (f.q !== undefined) {
      // A base64 body is not text: its decoded bytes are searched for the UTF-8 bytes of q.
      c.push(sql`(case when p."bodyEncoding" = 'base64'
        then position(convert_to(${f.q}, 'UTF8') in decode(p.body, 'base64')) > 0
        else strpos(lower(p.body), lower(${f.q})) > 0 end)`);
    }
    return c;
  };

  return {
    /**
     * The filter in a raw query string, or undefined when it names none (empty values count as
     * absent, as an empty search box sends them). Throws invalid_request on a bad or repeated one.
     */
    parse(rawQuery: string): Filter | undefined {
      const given = queryParams(rawQuery, filterNames);
      if (Object.keys(given).length === 0) return undefined;
      const parsed = v.safeParse(FilterSchema, given);
      if (!parsed.success) throw new HttpError('invalid_request', v.summarize(parsed.issues), { issues: issuesOf(parsed.issues) });
      const f: Filter = {};
      for (const [k, val] of Object.entries(parsed.output)) if (val !== undefined) Object.assign(f, { [k]: val });
      return f;
    },

    /**
     * Newest first, `before` exclusive, like a plain listing; see above for `next`. Like the plain
     * listing it also ends once its payloads reach `maxBytes` (one request at least), and returns
     * ids and sizes only: the caller holds the bytes from the read budget, then fetches them.
     */
    async page(webhookId: string, filter: Filter, limit: number, before: string | undefined, maxBytes: number): Promise<{ ids: string[]; bytes: number; next: string | null }> {
      const older = before === undefined ? sql`` : sql`and id < ${before}::uuid`;
      const where = conditions(filter).reduce((all, c) => sql`${all} and ${c}`);
      // The oldest request this page may examine (an index-only walk of (webhook_id, id)), or
      // none when fewer than scanRows are left. With it as the lower end of the id range, the
      // second statement reads at most scanRows payloads whichever plan Postgres picks.
      // (Ordered by the column, not by its text alias, which would sort instead of walking the index.)
      const [bound] = await sql<{ id: string }[]>`
        select id::text as id from requests
        where webhook_id = ${webhookId} ${older}
        order by requests.id desc
        offset ${opts.scanRows - 1} limit 1`;
      const floor = bound?.id ?? null;
      const found = await sql<{ id: string; bytes: number }[]>`
        select id::text as id, octet_length(payload) as bytes
        from requests,
          lateral json_to_record(payload::json) as p(method text, path text, headers json, body text, "bodyEncoding" text)
        where webhook_id = ${webhookId} ${older} ${floor === null ? sql`` : sql`and id >= ${floor}::uuid`}
          and ${where}
        order by requests.id desc
        limit ${limit + 1}`;
      const ids: string[] = [];
      let bytes = 0;
      for (const r of found) {
        if (ids.length === limit || (ids.length > 0 && bytes + r.bytes > maxBytes)) break;
        ids.push(r.id);
        bytes += r.bytes;
      }
      const cut = ids.length < found.length;
      return { ids, bytes, next: cut ? ids[ids.length - 1]! : floor };
    },
  };
}

export type Search = ReturnType<typeof createSearch>;
