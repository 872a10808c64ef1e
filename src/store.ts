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

// A batch travels as three newline-separated lists, split by string_to_table and zipped in
// order by ROWS FROM. JSON.stringify escapes every control character, so a payload never holds a
// newline; ids and webhook ids cannot either. Plain strings, where a text[] parameter would make
// postgres.js escape every quote of every payload and Postgres parse an array.
//
// No foreign key (migration 002): each webhook of the batch is locked once, FOR KEY SHARE as the
// foreign key would for every row, and only the rows of webhooks that got locked are stored. A
// webhook deleted before the lock is not found; one deleted after it waits for this commit, then
// its requests go too (deleteWebhook).
//
// Positions (migration 003): once every row is in (`counted` reads all of `stored`), each webhook
// of the batch is locked for its counter: an advisory lock per webhook, taken in one order by
// every batch so that two batches sharing webhooks cannot deadlock, then the UPDATE's row lock.
// Both last until the commit, so a webhook's positions are given in commit order, and a batch
// of the same webhook waits only for this one's commit, not for its rows. The answer is the
// position each stored webhook reached; a webhook not in it was deleted.
const insert = (sql: Sql, rows: readonly PendingRow[], webhookIds: readonly string[]) => sql<{ id: string; position: string }[]>`
  with live as materialized (
    select id from webhooks where id = any(string_to_array(${webhookIds.join('\n')}, E'\n')) for key share
  ), key as materialized (
    select nextval('request_batch_keys') as batch
  ), stored as (
    insert into requests (id, webhook_id, payload, batch)
    select r.id::uuid, r.webhook_id, r.payload, (select batch from key)
    from rows from (
      string_to_table(${rows.map((r) => r.id).join('\n')}, E'\n'),
      string_to_table(${rows.map((r) => r.webhookId).join('\n')}, E'\n'),
      string_to_table(${rows.map((r) => r.json).join('\n')}, E'\n')
    ) as r (id, webhook_id, payload)
    where r.webhook_id in (select id from live)
    returning id::text as id, webhook_id
  ), counted as materialized (
    -- No min(uuid) before PostgreSQL 16; the text of a UUID in byte order is its order.
    select webhook_id, min(id collate "C")::uuid as first_id, max(id collate "C")::uuid as last_id from stored group by webhook_id
  ), locked as materialized (
    select c.*, pg_advisory_xact_lock(1752133483, hashtext(c.webhook_id)) -- 0x686f6f6b, "hook"
    from (select * from counted order by hashtext(webhook_id), webhook_id) c
  ), advanced as (
    update webhooks w set position = w.position + 1 from locked l where w.id = l.webhook_id
    returning w.id, w.position, l.first_id, l.last_id
  ), recorded as (
    insert into request_batches (webhook_id, position, batch, first_id, last_id)
    select a.id, a.position, (select batch from key), a.first_id, a.last_id from advanced a
  )
  select id, position::text as position from advanced`;

/**
 * Where a request stands in its webhook's history: its batch's position, then its id. Everything
 * committed later has a greater cursor, whichever process wrote it.
 */
export interface Cursor {
  position: number;
  id: string;
}

/** What a committed batch reached: the position of each webhook whose rows were stored. */
export type Positions = Map<string, number>;

/** A stored request as the feed and replay read it back. */
export interface StoredRow {
  id: string;
  position: number;
  json: string;
}

/** Every query hooky makes. Payloads come back as the JSON text they were stored as. */
export function createStore(sql: Sql) {
  const store = {
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

    /**
     * Deletes a webhook, then its requests; false when there was none. The webhook goes first:
     * that waits for any batch holding its lock, so the second statement sees that batch's rows.
     */
    async deleteWebhook(id: string): Promise<boolean> {
      return sql.begin(async (tx) => {
        const rows = await tx`delete from webhooks where id = ${id} returning id`;
        if (rows.length > 0) await tx`delete from requests where webhook_id = ${id}`;
        if (rows.length > 0) await tx`delete from request_batches where webhook_id = ${id}`;
        return rows.length > 0;
      });
    },

    /**
     * Commits a batch in one statement and returns the position each webhook reached. A row
     * whose webhook was deleted meanwhile is skipped rather than failing the batch for everyone
     * else: its webhook is missing from the answer.
     */
    async insertRequests(rows: readonly PendingRow[]): Promise<Positions> {
      const webhookIds = [...new Set(rows.map((r) => r.webhookId))];
      const reached = await insert(sql, rows, webhookIds);
      return new Map(reached.map((w) => [w.id, Number(w.position)]));
    },

    /** Which of these request ids are stored. */
    async storedIds(ids: readonly string[]): Promise<Set<string>> {
      const rows = await sql<{ id: string }[]>`select id::text as id from requests where id = any(${ids as string[]}::uuid[])`;
      return new Set(rows.map((r) => r.id));
    },

    /** Newest first, `before` exclusive; one extra row tells whether there is a next page. */
    async listRequests(webhookId: string, limit: number, before: string | undefined): Promise<{ json: string[]; next: string | null }> {
      const rows = await sql<{ id: string; payload: string }[]>`
        select id, payload from requests
        where webhook_id = ${webhookId} ${before === undefined ? sql`` : sql`and id < ${before}::uuid`}
        order by id desc
        limit ${limit + 1}`;
      const more = rows.length > limit;
      const page = more ? rows.slice(0, limit) : rows;
      return { json: page.map((r) => r.payload), next: more ? page[page.length - 1]!.id : null };
    },

    async getRequest(webhookId: string, id: string): Promise<string | undefined> {
      const [row] = await sql<{ payload: string }[]>`
        select payload from requests where webhook_id = ${webhookId} and id = ${id}::uuid`;
      return row?.payload;
    },

    /**
     * Oldest first (in commit order), everything committed after request `since`; at most `limit`
     * rows plus one to tell truncation. `since` need not exist: an id that is not stored (one
     * deleted by retention, or `requestIdFloor(ms)`) resumes after every batch whose ids all come
     * before it.
     */
    async requestsSince(webhookId: string, since: string, limit: number): Promise<{ json: string[]; truncated: boolean }> {
      const { rows, truncated } = await store.requestsAfter(webhookId, await store.cursorOf(webhookId, since), limit);
      return { json: rows.map((r) => r.json), truncated };
    },

    /** The cursor of request `id`; for an id not stored, the cursor just before the first batch holding a later id. */
    async cursorOf(webhookId: string, id: string): Promise<Cursor> {
      const [row] = await sql<{ position: string }[]>`
        select coalesce(
          (select b.position from requests r join request_batches b on b.webhook_id = r.webhook_id and b.batch = r.batch
           where r.webhook_id = ${webhookId} and r.id = ${id}::uuid),
          (select min(position) from request_batches where webhook_id = ${webhookId} and last_id > ${id}::uuid),
          (select position from webhooks where id = ${webhookId}),
          0)::text as position`;
      return { position: Number(row!.position), id };
    },

    /**
     * Requests committed after `after`, in commit order: by batch position, then id. At most
     * `limit` rows, cut where their payload bytes would pass `maxBytes` (one row at least,
     * however large); `truncated`: more follow. Each batch holds a row at least, so the cursor's
     * batch and limit + 1 after it are enough, each read by an id range; the sizes come from
     * Postgres without reading a payload, and a payload past the cut is never sent.
     */
    async requestsAfter(webhookId: string, after: Cursor, limit: number, maxBytes = Number.MAX_SAFE_INTEGER): Promise<{ rows: StoredRow[]; truncated: boolean }> {
      const found = await sql<{ id: string; position: string; payload: string; n: string; upto: string }[]>`
        select id, position::text as position, payload, n::text as n, upto::text as upto from (
          select x.id, b.position, x.payload, x.bytes,
            row_number() over w as n, sum(x.bytes) over w as upto
          from (
            select position, batch, first_id, last_id from request_batches
            where webhook_id = ${webhookId} and position >= ${after.position}
            order by position limit ${limit + 2}
          ) b
          cross join lateral (
            select r.id as uid, r.id::text as id, r.payload, octet_length(r.payload) as bytes from requests r
            where r.webhook_id = ${webhookId} and r.id between b.first_id and b.last_id and r.batch = b.batch
              and (b.position > ${after.position} or r.id > ${after.id}::uuid)
            order by r.id limit ${limit + 1}
          ) x
          window w as (order by b.position, x.uid rows between unbounded preceding and current row)
          order by b.position, x.uid
          limit ${limit + 1}
        ) page
        -- Only the first row past the cut comes back, to tell that more follow.
        where n <= 2 or upto - bytes <= ${maxBytes}
        order by page.n`;
      const rows: StoredRow[] = [];
      for (const r of found) {
        if (Number(r.n) > limit || (r.n !== '1' && Number(r.upto) > maxBytes)) break;
        rows.push({ id: r.id, position: Number(r.position), json: r.payload });
      }
      return { rows, truncated: found.length > rows.length };
    },

    /** The newest committed request id of a webhook, or null. */
    async latestRequestId(webhookId: string): Promise<string | null> {
      return (await store.latest(webhookId))?.id ?? null;
    },

    /** The cursor of a webhook's newest committed request (the last of its newest batch), or null. */
    async latest(webhookId: string): Promise<Cursor | null> {
      const [row] = await sql<{ position: string; id: string }[]>`
        select b.position::text as position, b.last_id::text as id from request_batches b
        where b.webhook_id = ${webhookId} order by b.position desc limit 1`;
      return row ? { position: Number(row.position), id: row.id } : null;
    },

    /** The position each of these webhooks has reached; a webhook missing from the answer does not exist. */
    async positions(webhookIds: readonly string[]): Promise<Positions> {
      const rows = await sql<{ id: string; position: string }[]>`
        select id, position::text as position from webhooks where id = any(${webhookIds as string[]}::text[])`;
      return new Map(rows.map((r) => [r.id, Number(r.position)]));
    },

    async ping(): Promise<void> {
      await sql`select 1`;
    },
  };
  return store;
}

export type Store = ReturnType<typeof createStore>;
