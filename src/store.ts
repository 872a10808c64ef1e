/**
 * Every SQL statement of the request path, in one file (about 300 lines, on purpose): the
 * statements share the table layout of migrations 002–003 (payload as text, batches and their
 * positions), and a change to that layout is then read and made in one place.
 */
import type { PendingQuery, Row, Sql, TransactionSql } from 'postgres';
import { requestIdFloor, type WebhookResponse } from './protocol.js';

export type { WebhookResponse } from './protocol.js';

export interface Webhook {
  id: string;
  createdAt: string;
  response: WebhookResponse | null;
}

/** A captured request as it is stored and passed on (writer → store → relay → rooms): its id, its webhook and its payload JSON. */
export interface CapturedRow {
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
const insert = (sql: Sql, rows: readonly CapturedRow[], webhookIds: readonly string[]) => sql<{ id: string; position: string }[]>`
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

// Every deletion of requests goes through here, so that no batch row outlives its rows: each
// would be one more row for pageAfter and cursorOf to walk past, one per batch, forever.
//
// Two statements, not one: in a single statement (a WITH that deletes the rows, then the emptied
// batch rows) every part reads one snapshot, in which the rows being deleted are still there, and
// leaving them out by id made the planner loop over them per row, or scan request_batches whole.
// The second statement reads a fresh snapshot, its batches given as arrays: a nested loop on the
// (webhook_id, batch) index, then the (webhook_id, id) index over each batch's id range. That
// probe is an `offset 0` subquery: without the fence Postgres may plan the NOT EXISTS as a hash
// anti join over the whole requests table, and did, on a table of 3.8 million rows it had never
// analyzed (autovacuum off) and took for 53 million: 3.7 s to empty 207 batch rows, 13 ms fenced.
//
// A batch row goes only when no row of its batch is left. Its rows commit with it in one
// statement, so a batch row visible here has all its rows visible too: a batch committed
// meanwhile is either not seen at all or seen whole. What can be left behind, and is skipped by
// pageAfter: a batch two deletes emptied at once (each still saw the other's rows), or one whose
// rows went in a process that died between the two statements.
/**
 * Deletes the requests whose ids `ids` selects (a subquery such as `select id from requests
 * where webhook_id = … limit n`), then the batch rows that no longer hold any request. Answers
 * how many requests went.
 */
export async function deleteRequests(sql: Sql | TransactionSql, ids: PendingQuery<Row[]>): Promise<number> {
  const gone = await sql<{ webhook_id: string; batch: string; n: number }[]>`
    with gone as (delete from requests where id in (${ids}) returning webhook_id, batch)
    select webhook_id, batch::text as batch, count(*)::int as n from gone group by webhook_id, batch`;
  if (gone.length === 0) return 0;
  await deleteEmptiedBatches(sql, gone);
  return gone.reduce((sum, g) => sum + g.n, 0);
}

/** Of these batches, deletes the rows of those that hold no request any more (deleteRequests' second statement). */
export const deleteEmptiedBatches = (sql: Sql | TransactionSql, batches: readonly { webhook_id: string; batch: string }[]) => sql`
  delete from request_batches b
  using rows from (
    unnest(${batches.map((g) => g.webhook_id)}::text[]), unnest(${batches.map((g) => g.batch)}::bigint[])
  ) as g (webhook_id, batch)
  where b.webhook_id = g.webhook_id and b.batch = g.batch
    and not exists (
      select 1 from requests r
      where r.webhook_id = b.webhook_id and r.id between b.first_id and b.last_id and r.batch = b.batch
      offset 0
    )`;

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

/** Where a webhook stands: its position, and its creation time (which tells a re-created webhook from the one before). */
export interface Standing {
  position: number;
  created: string;
}

/** A stored request as the feed and replay read it back. */
export interface StoredRow {
  id: string;
  position: number;
  json: string;
}

/** One page of stored requests, cut by rows and by bytes (see `pageOf`). */
export interface Page {
  ids: string[];
  /** Payload bytes of the page, as Postgres stores them (UTF-8). */
  bytes: number;
  more: boolean;
}

/**
 * The rows of a page query (ordered, with a running byte total `upto`, and at most one row past
 * the cut) cut at `limit` rows or where the bytes would pass `maxBytes`, one row at least.
 */
function cut(rows: readonly { id: string; bytes: number; n: string; upto: string }[], limit: number, maxBytes: number): Page {
  const ids: string[] = [];
  let bytes = 0;
  for (const r of rows) {
    if (Number(r.n) > limit || (r.n !== '1' && Number(r.upto) > maxBytes)) break;
    ids.push(r.id);
    bytes += r.bytes;
  }
  return { ids, bytes, more: rows.length > ids.length };
}

/** Below every request id: the id of a cursor with no request before it (a valid `since`, replaying everything). */
export const noRequest = requestIdFloor(0);

/** Serialises webhook creation while a limit is counted ("hooky" + 1; migrations hold "hooky"). */
const createLockKey = 0x686f6f6b7a;

/** Every query hooky makes. Payloads come back as the JSON text they were stored as. */
export function createStore(sql: Sql) {
  /** The stored rows of `ids`, in their order; a row deleted meanwhile is missing. */
  async function payloadRows(webhookId: string, ids: readonly string[]): Promise<{ id: string; payload: string }[]> {
    if (ids.length === 0) return [];
    return sql<{ id: string; payload: string }[]>`
      select r.id::text as id, r.payload from unnest(${ids as string[]}::uuid[]) with ordinality as p(id, n)
      join requests r on r.webhook_id = ${webhookId} and r.id = p.id
      order by p.n`;
  }

  /**
   * pageAfter's rows, in commit order (batch position, then id), with their running count and
   * bytes: the page and the first row past it. Only batches holding a row after the cursor are
   * read, so limit + 1 of them are enough, each read by an id range. A batch row left without rows
   * (two deletes emptying it at once, see deleteRequests) is walked past, not counted: counted, a
   * run of limit + 1 of them would end the page with no row and no `more`.
   */
  const rowsAfter = (webhookId: string, after: Cursor, limit: number, maxBytes: number) => sql`
    select id, position, bytes, n, upto from (
      select x.uid as id, b.position, x.bytes, row_number() over w as n, sum(x.bytes) over w as upto
      from (
        select position, batch, first_id, last_id from request_batches rb
        where webhook_id = ${webhookId} and position >= ${after.position}
          and exists (
            -- A probe per batch row, fenced as in deleteRequests: never a join over the table.
            select 1 from requests r
            where r.webhook_id = ${webhookId} and r.id between rb.first_id and rb.last_id and r.batch = rb.batch
              and (rb.position > ${after.position} or r.id > ${after.id}::uuid)
            offset 0
          )
        order by position limit ${limit + 1}
      ) b
      cross join lateral (
        select r.id as uid, octet_length(r.payload) as bytes from requests r
        where r.webhook_id = ${webhookId} and r.id between b.first_id and b.last_id and r.batch = b.batch
          and (b.position > ${after.position} or r.id > ${after.id}::uuid)
        order by r.id limit ${limit + 1}
      ) x
      window w as (order by b.position, x.uid rows between unbounded preceding and current row)
      order by b.position, x.uid
      limit ${limit + 1}
    ) page
    where n <= 2 or upto - bytes <= ${maxBytes}`;

  const store = {
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
        if (rows.length > 0) await tx`delete from request_batches where webhook_id = ${id}`;
        return rows.length > 0;
      });
    },

    /**
     * Commits a batch in one statement and returns the position each webhook reached. A row
     * whose webhook was deleted meanwhile is skipped rather than failing the batch for everyone
     * else: its webhook is missing from the answer.
     */
    async insertRequests(rows: readonly CapturedRow[]): Promise<Positions> {
      const webhookIds = [...new Set(rows.map((r) => r.webhookId))];
      const reached = await insert(sql, rows, webhookIds);
      return new Map(reached.map((w) => [w.id, Number(w.position)]));
    },

    /** Which of these request ids are stored. */
    async storedIds(ids: readonly string[]): Promise<Set<string>> {
      const rows = await sql<{ id: string }[]>`select id::text as id from requests where id = any(${ids as string[]}::uuid[])`;
      return new Set(rows.map((r) => r.id));
    },

    /**
     * A page of a webhook's requests, newest first from `before` (exclusive), cut at `limit` rows
     * or where their payload bytes would pass `maxBytes` (one row at least, however large). Only
     * ids and sizes: Postgres reads the sizes without the payloads, so the caller can hold the
     * bytes from the read budget before `payloadsOf` fetches them.
     */
    async pageOf(webhookId: string, before: string | undefined, limit: number, maxBytes: number): Promise<Page> {
      const older = before === undefined ? sql`` : sql`and id < ${before}::uuid`;
      // Only the first row past the page comes back beside it (n <= 2, or the bytes before it fit).
      const rows = await sql<{ id: string; bytes: number; n: string; upto: string }[]>`
        select id::text as id, bytes, n::text as n, upto::text as upto from (
          select id, octet_length(payload) as bytes, row_number() over w as n, sum(octet_length(payload)) over w as upto
          from requests
          where webhook_id = ${webhookId} ${older}
          window w as (order by id desc rows between unbounded preceding and current row)
          order by id desc
          limit ${limit + 1}
        ) page
        where n <= 2 or upto - bytes <= ${maxBytes}
        order by page.n`;
      return cut(rows, limit, maxBytes);
    },

    /** A page of what was committed after `after`, in commit order, cut like `pageOf` (rowsAfter); `last` is the cursor of its last row. */
    async pageAfter(webhookId: string, after: Cursor, limit: number, maxBytes: number): Promise<Page & { positions: number[]; last: Cursor | undefined }> {
      const rows = await sql<{ id: string; position: string; bytes: number; n: string; upto: string }[]>`
        select id::text as id, position::text as position, bytes, n::text as n, upto::text as upto
        from (${rowsAfter(webhookId, after, limit, maxBytes)}) page
        order by page.n`;
      const page = cut(rows, limit, maxBytes);
      const positions = rows.slice(0, page.ids.length).map((r) => Number(r.position));
      const n = page.ids.length;
      return { ...page, positions, last: n === 0 ? undefined : { position: positions[n - 1]!, id: page.ids[n - 1]! } };
    },

    /** The payloads of a page, in the order of `ids`; a row deleted since its page was cut is missing. */
    async payloadsOf(webhookId: string, ids: readonly string[]): Promise<string[]> {
      return (await payloadRows(webhookId, ids)).map((r) => r.payload);
    },

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

    /**
     * The cursor of request `id`; for an id not stored (deleted, or never), the cursor at the
     * first batch whose ids reach it (`last_id >=`: a deleted request's own batch row, kept,
     * places it exactly), so a resume from it gets every later commit, at worst a few twice.
     */
    async cursorOf(webhookId: string, id: string): Promise<Cursor> {
      const [row] = await sql<{ position: string }[]>`
        select coalesce(
          (select b.position from requests r join request_batches b on b.webhook_id = r.webhook_id and b.batch = r.batch
           where r.webhook_id = ${webhookId} and r.id = ${id}::uuid),
          (select min(position) from request_batches where webhook_id = ${webhookId} and last_id >= ${id}::uuid),
          (select position from webhooks where id = ${webhookId}),
          0)::text as position`;
      return { position: Number(row!.position), id };
    },

    /**
     * Requests committed after `after`, in commit order, with their payloads: a page of
     * `pageAfter` with its payloads. `truncated`: more follow.
     */
    async requestsAfter(webhookId: string, after: Cursor, limit: number, maxBytes = Number.MAX_SAFE_INTEGER): Promise<{ rows: StoredRow[]; truncated: boolean }> {
      // pageAfter and the page's payloads in one statement (the relay's fill, on every notice
      // of another instance's batch): one round trip, and a payload only for a row of the page
      // (cut's rule), not for the first row past it.
      const rows = await sql<{ id: string; position: string; bytes: number; n: string; upto: string; payload: string | null }[]>`
        select p.id::text as id, p.position::text as position, p.bytes, p.n::text as n, p.upto::text as upto, r.payload
        from (${rowsAfter(webhookId, after, limit, maxBytes)}) p
        left join lateral (
          select payload from requests r
          where r.webhook_id = ${webhookId} and r.id = p.id and p.n <= ${limit} and (p.n = 1 or p.upto <= ${maxBytes})
        ) r on true
        order by p.n`;
      const page = cut(rows, limit, maxBytes);
      // Every row of the page was read in this statement's snapshot: its payload is there.
      const found = rows.slice(0, page.ids.length);
      return { rows: found.map((r) => ({ id: r.id, position: Number(r.position), json: r.payload! })), truncated: page.more };
    },

    /**
     * The cursor after everything a webhook has committed, or null when it has committed nothing
     * (or does not exist): see `standing`.
     */
    async latest(webhookId: string): Promise<Cursor | null> {
      return (await store.standing(webhookId))?.latest ?? null;
    },

    /**
     * Where each of these webhooks stands: the position it has reached and when it was created
     * (a webhook deleted and created again starts its positions over: `created` tells the two
     * apart). A webhook missing from the answer does not exist.
     */
    async positions(webhookIds: readonly string[]): Promise<Map<string, Standing>> {
      const rows = await sql<{ id: string; position: string; created: string }[]>`
        select id, position::text as position, created_at::text as created from webhooks where id = any(${webhookIds as string[]}::text[])`;
      return new Map(rows.map((r) => [r.id, { position: Number(r.position), created: r.created }]));
    },

    /**
     * A webhook's creation time and the cursor after everything it has committed (null: nothing
     * yet), read at once; undefined: no such webhook. The cursor is the position it reached and
     * the last id of its newest batch still stored (`requestIdFloor(0)` when none is). The
     * position is the webhook's counter, not its newest batch row's: deletions remove emptied
     * batch rows, and a cursor behind the counter would make the relay read back, on every
     * check, batches that hold nothing.
     */
    async standing(webhookId: string): Promise<{ created: string; latest: Cursor | null } | undefined> {
      const [row] = await sql<{ created: string; position: string; id: string | null }[]>`
        select w.created_at::text as created, w.position::text as position, (
          select b.last_id::text from request_batches b where b.webhook_id = w.id order by b.position desc limit 1
        ) as id
        from webhooks w where w.id = ${webhookId}`;
      if (row === undefined) return undefined;
      const position = Number(row.position);
      return { created: row.created, latest: position === 0 ? null : { position, id: row.id ?? noRequest } };
    },

    async ping(): Promise<void> {
      await sql`select 1`;
    },
  };
  return store;
}

export type Store = ReturnType<typeof createStore>;
