import type { Sql } from 'postgres';
import type { WebhookResponse } from './protocol.js';

export type { WebhookResponse } from './protocol.js';

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
// its requests go too (deleteWebhook). The answer is the webhooks that were locked.
const insert = (sql: Sql, rows: readonly PendingRow[], webhookIds: readonly string[]) => sql<{ id: string }[]>`
  with live as materialized (
    select id from webhooks where id = any(string_to_array(${webhookIds.join('\n')}, E'\n')) for key share
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

/** `newest`: REST listings, newest first. `oldest`: `since` replays, oldest first. */
export type PageOrder = 'newest' | 'oldest';

/** One page of stored requests, cut by rows and by bytes (see `pageOf`). */
export interface Page {
  ids: string[];
  /** Payload bytes of the page, as Postgres stores them (UTF-8). */
  bytes: number;
  more: boolean;
}

/** Serialises webhook creation while a limit is counted ("hooky" + 1; migrations hold "hooky"). */
const createLockKey = 0x686f6f6b7a;

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

    /**
     * Inserts a webhook unless `max` exist already: false when the id is taken, 'full' at the
     * limit. Creations wait for one another on an advisory lock, so concurrent ones (from any
     * instance) cannot pass the limit together; the count stops at `max` rows.
     */
    async createWebhookWithin(max: number, id: string, response: WebhookResponse | null): Promise<Webhook | false | 'full'> {
      return sql.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${createLockKey})`;
        const rows = await tx<WebhookRow[]>`
          insert into webhooks (id, response)
          select ${id}, ${response === null ? null : sql.json(response)}
          where (select count(*) from (select 1 from webhooks limit ${max}) as existing) < ${max}
          on conflict (id) do nothing
          returning id, created_at, response`;
        if (rows[0]) return toWebhook(rows[0]);
        const [taken] = await tx`select 1 from webhooks where id = ${id}`;
        return taken ? false : 'full';
      });
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
        return rows.length > 0;
      });
    },

    /**
     * Commits a batch in one statement and returns the ids stored. A row whose webhook was
     * deleted meanwhile is skipped rather than failing the batch for everyone else. Undefined
     * means every row was stored.
     */
    async insertRequests(rows: readonly PendingRow[]): Promise<Set<string> | undefined> {
      const webhookIds = [...new Set(rows.map((r) => r.webhookId))];
      const live = await insert(sql, rows, webhookIds);
      // The common case, every webhook still there, needs no set.
      if (live.length === webhookIds.length) return undefined;
      const kept = new Set(live.map((w) => w.id));
      return new Set(rows.filter((r) => kept.has(r.webhookId)).map((r) => r.id));
    },

    /** Which of these request ids are stored. */
    async storedIds(ids: readonly string[]): Promise<Set<string>> {
      const rows = await sql<{ id: string }[]>`select id::text as id from requests where id = any(${ids as string[]}::uuid[])`;
      return new Set(rows.map((r) => r.id));
    },

    /**
     * The ids of one page and their payload bytes, without the payloads: at most `limit` rows,
     * `newest` first before `cursor` or `oldest` first after it, cut where the running total of
     * payload bytes would pass `maxBytes` (a page has at least one row, however large). The cut
     * is made by Postgres, from sizes it reads without detoasting a payload, so a page's bytes
     * are known before any of them is fetched. `more`: rows follow the page.
     */
    async pageOf(webhookId: string, order: PageOrder, cursor: string | undefined, limit: number, maxBytes: number): Promise<Page> {
      const newest = order === 'newest';
      const dir = newest ? sql`desc` : sql`asc`;
      const after = cursor === undefined ? sql`` : newest ? sql`and id < ${cursor}::uuid` : sql`and id > ${cursor}::uuid`;
      // Only the first row past the page comes back beside it (n <= 2, or the bytes before it fit).
      const rows = await sql<{ id: string; bytes: number; keep: boolean }[]>`
        with page as (
          select id, octet_length(payload) as bytes, row_number() over w as n, sum(octet_length(payload)) over w as upto
          from requests
          where webhook_id = ${webhookId} ${after}
          window w as (order by id ${dir} rows between unbounded preceding and current row)
          order by id ${dir}
          limit ${limit + 1}
        )
        select id::text as id, bytes, n <= ${limit} and (n = 1 or upto <= ${maxBytes}) as keep
        from page
        where n <= 2 or upto - bytes <= ${maxBytes}
        order by n`;
      const ids: string[] = [];
      let bytes = 0;
      for (const r of rows) {
        if (!r.keep) break;
        ids.push(r.id);
        bytes += r.bytes;
      }
      return { ids, bytes, more: rows.length > ids.length };
    },

    /** The payloads of a page, in its order; a row deleted since its page was cut is missing. */
    async payloadsOf(webhookId: string, ids: readonly string[], order: PageOrder): Promise<string[]> {
      if (ids.length === 0) return [];
      const rows = await sql<{ payload: string }[]>`
        select payload from requests
        where webhook_id = ${webhookId} and id = any(${ids as string[]}::uuid[])
        order by id ${order === 'newest' ? sql`desc` : sql`asc`}`;
      return rows.map((r) => r.payload);
    },

    /** Payload bytes of one request, read without detoasting it; undefined when there is none. */
    async sizeOf(webhookId: string, id: string): Promise<number | undefined> {
      const [row] = await sql<{ bytes: number }[]>`
        select octet_length(payload) as bytes from requests where webhook_id = ${webhookId} and id = ${id}::uuid`;
      return row?.bytes;
    },

    async getRequest(webhookId: string, id: string): Promise<string | undefined> {
      const [row] = await sql<{ payload: string }[]>`
        select payload from requests where webhook_id = ${webhookId} and id = ${id}::uuid`;
      return row?.payload;
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
