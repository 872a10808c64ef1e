import type { Sql } from 'postgres';
import * as v from 'valibot';

/** The custom answer a webhook's capture route gives instead of the default 200. */
// uWS writes these itself; a webhook that set them would corrupt the HTTP framing.
const reservedHeaders = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'date']);

/** The custom answer a webhook's capture route gives instead of the default 200. */
export const ResponseSchema = v.strictObject({
  status: v.optional(v.pipe(v.number(), v.integer(), v.minValue(200), v.maxValue(599))),
  headers: v.optional(
    v.pipe(
      v.record(
        v.pipe(v.string(), v.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'header names must be RFC 9110 tokens')),
        v.pipe(v.string(), v.maxLength(8192), v.regex(/^[\t\x20-\x7e\x80-\xff]*$/, 'header values must hold no control characters')),
      ),
      // Header names are case-insensitive; stored lower-case like captured headers.
      v.transform((h) => Object.fromEntries(Object.entries(h).map(([k, val]) => [k.toLowerCase(), val]))),
      v.check((h) => !Object.keys(h).some((k) => reservedHeaders.has(k)), `headers may not set ${[...reservedHeaders].join(', ')}`),
    ),
  ),
  body: v.optional(v.pipe(v.string(), v.maxLength(1024 * 1024))),
  delayMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(30_000))),
});

export type WebhookResponse = v.InferOutput<typeof ResponseSchema>;

export interface Webhook {
  id: string;
  createdAt: string;
  response: WebhookResponse | null;
}

/** A request waiting for the writer: its id, its webhook and the payload JSON that is stored. */
export interface PendingRow {
  id: string;
  webhookId: string;
  json: string;
}

interface WebhookRow {
  id: string;
  created_at: Date;
  response: WebhookResponse | null;
}

const toWebhook = (r: WebhookRow): Webhook => ({ id: r.id, createdAt: r.created_at.toISOString(), response: r.response });

// The payloads travel as ONE json array, `[p1,p2,…]`, built by joining strings that are already
// JSON: no per-element escaping in postgres.js (a text[] parameter escapes every quote of every
// payload) and one parse in Postgres (instead of array_in, then json_in per element).
// json_array_elements on `json` hands back each element's original text; ROWS FROM zips the three
// lists in order. `::text::json`: typed json, postgres.js would JSON.stringify the string into a
// JSON scalar. Compared with the other shapes by `npm run bench -- statements`.
const insert = (sql: Sql, rows: readonly PendingRow[]) => sql<{ id: string }[]>`
  insert into requests (id, webhook_id, payload)
  select r.id, r.webhook_id, r.payload
  from rows from (
    unnest(${rows.map((r) => r.id)}::uuid[]),
    unnest(${rows.map((r) => r.webhookId)}::text[]),
    json_array_elements(${`[${rows.map((r) => r.json).join(',')}]`}::text::json)
  ) as r (id, webhook_id, payload)
  where exists (select 1 from webhooks w where w.id = r.webhook_id)
  returning id`;

/** Every query hooky makes. Payloads come back as the JSON text they were stored as. */
export function createStore(sql: Sql) {
  return {
    /** Inserts a webhook; false when the id is taken. */
    async createWebhook(id: string, response: WebhookResponse | null): Promise<Webhook | false> {
      const rows = await sql<WebhookRow[]>`
        insert into webhooks (id, response) values (${id}, ${response === null ? null : sql.json(response)})
        on conflict (id) do nothing
        returning id, created_at, response`;
      return rows[0] ? toWebhook(rows[0]) : false;
    },

    async getWebhook(id: string): Promise<Webhook | undefined> {
      const [row] = await sql<WebhookRow[]>`select id, created_at, response from webhooks where id = ${id}`;
      return row && toWebhook(row);
    },

    /** Deletes a webhook and, by cascade, its requests; false when there was none. */
    async deleteWebhook(id: string): Promise<boolean> {
      const rows = await sql`delete from webhooks where id = ${id} returning id`;
      return rows.length > 0;
    },

    /**
     * Commits a batch in one statement and returns the ids stored. A row whose webhook was
     * deleted meanwhile is skipped rather than failing the batch for everyone else. Undefined
     * means every row was stored.
     */
    async insertRequests(rows: readonly PendingRow[]): Promise<Set<string> | undefined> {
      const result = await insert(sql, rows);
      // The common case, every row stored, needs no set.
      return result.length === rows.length ? undefined : new Set(result.map((r) => r.id));
    },

    /** Which of these request ids are stored. */
    async storedIds(ids: readonly string[]): Promise<Set<string>> {
      const rows = await sql<{ id: string }[]>`select id::text as id from requests where id = any(${ids as string[]}::uuid[])`;
      return new Set(rows.map((r) => r.id));
    },

    /** Newest first, `before` exclusive; one extra row tells whether there is a next page. */
    async listRequests(webhookId: string, limit: number, before: string | undefined): Promise<{ json: string[]; next: string | null }> {
      const rows = await sql<{ id: string; payload: string }[]>`
        select id, payload::text as payload from requests
        where webhook_id = ${webhookId} ${before === undefined ? sql`` : sql`and id < ${before}::uuid`}
        order by id desc
        limit ${limit + 1}`;
      const more = rows.length > limit;
      const page = more ? rows.slice(0, limit) : rows;
      return { json: page.map((r) => r.payload), next: more ? page[page.length - 1]!.id : null };
    },

    async getRequest(webhookId: string, id: string): Promise<string | undefined> {
      const [row] = await sql<{ payload: string }[]>`
        select payload::text as payload from requests where webhook_id = ${webhookId} and id = ${id}::uuid`;
      return row?.payload;
    },

    /** Oldest first, strictly after `since`; at most `limit` rows plus one to tell truncation. */
    async requestsSince(webhookId: string, since: string, limit: number): Promise<{ json: string[]; truncated: boolean }> {
      const rows = await sql<{ payload: string }[]>`
        select payload::text as payload from requests
        where webhook_id = ${webhookId} and id > ${since}::uuid
        order by id asc
        limit ${limit + 1}`;
      const truncated = rows.length > limit;
      return { json: (truncated ? rows.slice(0, limit) : rows).map((r) => r.payload), truncated };
    },

    /** The newest committed request id of a webhook, or null. */
    async latestRequestId(webhookId: string): Promise<string | null> {
      const [row] = await sql<{ id: string }[]>`
        select id::text as id from requests where webhook_id = ${webhookId} order by id desc limit 1`;
      return row?.id ?? null;
    },

    async ping(): Promise<void> {
      await sql`select 1`;
    },
  };
}

export type Store = ReturnType<typeof createStore>;
