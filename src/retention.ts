import type { Sql } from 'postgres';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { requestIdFloor } from './protocol.js';
import { deleteRequests, type CapturedRow } from './store.js';

export interface RetentionOptions {
  /** Newest requests kept per webhook; 0 = no limit. */
  maxRequests: number;
  /** Stored payload bytes kept per webhook, newest first; 0 = no limit. */
  maxBytes: number;
  /** Age in ms past which a request is deleted; 0 = kept forever. */
  maxAgeMs: number;
  /** Pause between the end of one pass and the start of the next. */
  intervalMs: number;
  /** Rows per DELETE statement. */
  batch: number;
  /**
   * How long after its id was made a request may still commit, ms (30 s when not given): the
   * byte rule takes rows with older ids as counted once a pass has counted past them.
   */
  lateMs?: number;
}

interface Deps {
  metrics: Metrics;
  log: Logger;
}

/** Past this many webhooks written between two passes, the next pass checks every webhook instead. */
const maxTouched = 100_000;
const webhookPage = 500;
/** Rows read per statement while summing a webhook's payload sizes for the byte budget. */
const sizePage = 1000;
/** Webhooks whose stored bytes the byte rule remembers; past it, it forgets them all (and counts again). */
const maxCounted = 100_000;
/**
 * Held by the instance running an age pass ("hookr"). Distinct from the other advisory keys:
 * migrations 0x686f6f6b79, webhook creation 0x686f6f6b7a, and the INSERT's per-webhook locks
 * (the two-key form, 0x686f6f6b and a hash).
 */
export const ageLockKey = 0x686f6f6b72;

/**
 * Deletes what retention allows to go: requests older than `maxAgeMs`, those past the newest
 * `maxRequests` of a webhook, and those past the newest `maxBytes` of stored payload of a webhook. A background job, off the capture path: one statement at a time on
 * one pooled connection, each deleting at most `batch` rows through an index, so captures never
 * wait behind it for a lock or a connection.
 *
 * The first pass checks every webhook; later passes check the ones written to since (this
 * instance's writes, reported through `written`), which keeps a pass cheap when most webhooks
 * are idle. Queries live here rather than in store.ts because nothing else runs them.
 */
export function createRetention(sql: Sql, opts: RetentionOptions, { metrics, log }: Deps) {
  // The limits checked webhook by webhook, on the ones written to since the last pass.
  const perWebhook = opts.maxRequests > 0 || opts.maxBytes > 0;
  const enabled = perWebhook || opts.maxAgeMs > 0;
  const touched = new Set<string>();
  let sweepAll = true;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let closed = false;
  const lateMs = opts.lateMs ?? 30_000;
  // What the byte rule found for a webhook: at most `bytes` of payload are stored in rows whose
  // ids are up to `upto`. Rows below `upto` only ever go (deletions, by anyone) — a request
  // commits within `lateMs` of its id — so it stays an upper bound, and the next pass need only
  // size the rows after `upto`: a webhook under its budget costs its new rows, not all of them.
  const counted = new Map<string, { bytes: number; upto: string }>();

  /**
   * Repeats a bounded DELETE until it deletes less than a full batch, or the job is closed.
   * A statement answering undefined deleted nothing because another instance does the work.
   */
  async function deleteInBatches(rule: Parameters<Metrics['retentionDeleted']['inc']>[0], statement: () => Promise<number | undefined>): Promise<void> {
    for (;;) {
      if (closed) return;
      const count = await statement();
      if (count === undefined) return;
      if (count > 0) metrics.retentionDeleted.inc(rule, count);
      if (count < opts.batch) return;
    }
  }

  function byAge(): Promise<void> {
    // Ids are UUIDv7: "older than X" is a range scan of the primary key, no column of its own.
    const cutoff = requestIdFloor(Date.now() - opts.maxAgeMs);
    // The age rule is the same in every instance (and worker) on the database, and covers every
    // webhook: one of them is enough. Each batch runs under a lock that another instance does not
    // wait for: it skips its pass, instead of running the same DELETE beside this one and
    // fighting over the same rows. Taken per transaction, so an instance that dies mid-pass
    // holds nothing, and the next pass, in whichever instance, goes on.
    return deleteInBatches('max_age', () =>
      sql.begin(async (tx) => {
        const [lock] = await tx<{ held: boolean }[]>`select pg_try_advisory_xact_lock(${ageLockKey}) as held`;
        if (!lock!.held) return undefined;
        // Ordered, so that it walks the primary key from the oldest: unordered, a table Postgres has
        // no statistics for is read from the start of its heap (seen: a seq scan of 3.8 million
        // rows), where, without a vacuum, every row an earlier pass deleted still lies.
        return deleteRequests(tx, tx`select id from requests where id < ${cutoff}::uuid order by id limit ${opts.batch}`);
      }),
    );
  }

  async function byCount(webhookId: string): Promise<void> {
    // The newest row past the limit: it and everything older go. An index-only walk of
    // (webhook_id, id), at most maxRequests entries long. (Ordered by the uuid column, not by
    // its text alias `id`, which would sort every row of the webhook instead.)
    const [oldestKept] = await sql<{ id: string }[]>`
      select id::text as id from requests where webhook_id = ${webhookId}
      order by requests.id desc offset ${opts.maxRequests} limit 1`;
    if (oldestKept === undefined) return;
    await deleteInBatches('max_requests', () =>
      deleteRequests(sql, sql`select id from requests where webhook_id = ${webhookId} and id <= ${oldestKept.id}::uuid limit ${opts.batch}`),
    );
  }

  /**
   * Sums the payload sizes of a webhook's rows after `after` (all of them when undefined), newest
   * first, a page at a time down the (webhook_id, id) index, until they pass `budget`: `cut` is
   * the row that passed it (it and everything older are over), `bytes` the sum of the rows before
   * it. octet_length reads a text's stored length without detoasting the payload.
   */
  async function sizes(webhookId: string, after: string | undefined, budget: number): Promise<{ bytes: number; cut: string | undefined }> {
    let bytes = 0;
    let before: string | undefined;
    while (!closed) {
      const page = await sql<{ id: string; bytes: number }[]>`
        select id::text as id, octet_length(payload) as bytes from requests
        where webhook_id = ${webhookId}
          ${after === undefined ? sql`` : sql`and id > ${after}::uuid`}
          ${before === undefined ? sql`` : sql`and id < ${before}::uuid`}
        order by requests.id desc limit ${sizePage}`;
      metrics.retentionSized.inc(page.length);
      for (const row of page) {
        if (bytes + row.bytes > budget) return { bytes, cut: row.id };
        bytes += row.bytes;
      }
      if (page.length < sizePage) break;
      before = page[page.length - 1]!.id;
    }
    return { bytes, cut: undefined };
  }

  async function byBytes(webhookId: string): Promise<void> {
    // Taken before anything is read: rows with ids up to here that are not stored yet never will be.
    const upto = requestIdFloor(Date.now() - lateMs);
    const known = counted.get(webhookId);
    if (known !== undefined) {
      // Under the budget with what was there (at most) and what came since: nothing to delete.
      const fresh = await sizes(webhookId, known.upto, opts.maxBytes - known.bytes);
      if (fresh.cut === undefined) return void counted.set(webhookId, { bytes: known.bytes + fresh.bytes, upto });
    }
    // Every row, newest first, until the budget is passed: that row and everything older go.
    // Bounded by the budget (and, with maxRequests, by that count), not by the table.
    const all = await sizes(webhookId, undefined, opts.maxBytes);
    if (closed) return;
    if (counted.size >= maxCounted) counted.clear();
    counted.set(webhookId, { bytes: all.bytes, upto });
    if (all.cut === undefined) return;
    const last = all.cut;
    await deleteInBatches('max_bytes', () =>
      deleteRequests(sql, sql`select id from requests where webhook_id = ${webhookId} and id <= ${last}::uuid limit ${opts.batch}`),
    );
  }

  async function trim(webhookId: string): Promise<void> {
    if (opts.maxRequests > 0) await byCount(webhookId);
    if (opts.maxBytes > 0 && !closed) await byBytes(webhookId);
  }

  async function everyWebhook(): Promise<void> {
    let after = '';
    for (;;) {
      const page = await sql<{ id: string }[]>`select id from webhooks where id > ${after} order by id limit ${webhookPage}`;
      for (const { id } of page) {
        if (closed) return;
        await trim(id);
      }
      if (page.length < webhookPage) return;
      after = page[page.length - 1]!.id;
    }
  }

  async function pass(): Promise<void> {
    if (opts.maxAgeMs > 0) await byAge();
    if (!perWebhook || closed) return;
    // Taken before the work starts: webhooks written meanwhile are checked by the next pass.
    const all = sweepAll;
    const ids = [...touched];
    sweepAll = false;
    touched.clear();
    let done = 0;
    try {
      if (all) await everyWebhook();
      else for (; done < ids.length && !closed; done++) await trim(ids[done]!);
    } catch (err) {
      // Nothing is forgotten: what this pass did not finish is the next pass's work.
      if (all) sweepAll = true;
      for (const id of ids.slice(done)) touched.add(id);
      throw err;
    }
  }

  function schedule() {
    if (closed) return;
    timer = setTimeout(() => {
      running = pass()
        .catch((err: unknown) => log.warn('retention pass failed; retrying next interval', { err }))
        .finally(() => {
          running = undefined;
          schedule();
        });
    }, opts.intervalMs);
    // The job never keeps the process alive on its own.
    timer.unref();
  }

  return {
    /** Starts the first pass after one interval. Does nothing when no limit is set. */
    start(): void {
      if (enabled && timer === undefined && !closed) schedule();
    },

    /** Notes the webhooks of committed rows, for the count and byte limits of the next pass. */
    written(rows: readonly CapturedRow[]): void {
      if (!perWebhook) return;
      for (const row of rows) touched.add(row.webhookId);
      if (touched.size > maxTouched) {
        touched.clear();
        sweepAll = true;
      }
    },

    /** Stops scheduling and resolves once the statement in flight, if any, has returned. Safe twice. */
    async close(): Promise<void> {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}

export type Retention = ReturnType<typeof createRetention>;
