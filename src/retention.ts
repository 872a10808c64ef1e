import type { Sql } from 'postgres';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { requestIdFloor } from './protocol.js';
import type { PendingRow } from './store.js';

export interface RetentionOptions {
  /** Newest requests kept per webhook; 0 = no limit. */
  maxRequests: number;
  /** Age in ms past which a request is deleted; 0 = kept forever. */
  maxAgeMs: number;
  /** Pause between the end of one pass and the start of the next. */
  intervalMs: number;
  /** Rows per DELETE statement. */
  batch: number;
}

interface Deps {
  metrics: Metrics;
  log: Logger;
}

/** Past this many webhooks written between two passes, the next pass checks every webhook instead. */
const maxTouched = 100_000;
const webhookPage = 500;

/**
 * Deletes what retention allows to go: requests older than `maxAgeMs`, and those past the newest
 * `maxRequests` of a webhook. A background job, off the capture path: one statement at a time on
 * one pooled connection, each deleting at most `batch` rows through an index, so captures never
 * wait behind it for a lock or a connection.
 *
 * The first pass checks every webhook; later passes check the ones written to since (this
 * instance's writes, reported through `written`), which keeps a pass cheap when most webhooks
 * are idle. Queries live here rather than in store.ts because nothing else runs them.
 */
export function createRetention(sql: Sql, opts: RetentionOptions, { metrics, log }: Deps) {
  const enabled = opts.maxRequests > 0 || opts.maxAgeMs > 0;
  const touched = new Set<string>();
  let sweepAll = true;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  /** Repeats a bounded DELETE until it deletes less than a full batch, or the job is closed. */
  async function deleteInBatches(rule: string, statement: () => Promise<{ count: number }>): Promise<void> {
    for (;;) {
      if (closed) return;
      const { count } = await statement();
      if (count > 0) metrics.retentionDeleted.inc(rule, count);
      if (count < opts.batch) return;
    }
  }

  function byAge(): Promise<void> {
    // Ids are UUIDv7: "older than X" is a range scan of the primary key, no column of its own.
    const cutoff = requestIdFloor(Date.now() - opts.maxAgeMs);
    return deleteInBatches(
      'max_age',
      () => sql`delete from requests where id in (select id from requests where id < ${cutoff}::uuid limit ${opts.batch})`,
    );
  }

  async function byCount(webhookId: string): Promise<void> {
    // The newest row past the limit: it and everything older go. An index-only walk of
    // (webhook_id, id), at most maxRequests entries long.
    const [oldestKept] = await sql<{ id: string }[]>`
      select id::text as id from requests where webhook_id = ${webhookId}
      order by id desc offset ${opts.maxRequests} limit 1`;
    if (oldestKept === undefined) return;
    await deleteInBatches(
      'max_requests',
      () => sql`
        delete from requests where id in (
          select id from requests where webhook_id = ${webhookId} and id <= ${oldestKept.id}::uuid limit ${opts.batch})`,
    );
  }

  async function everyWebhook(): Promise<void> {
    let after = '';
    for (;;) {
      const page = await sql<{ id: string }[]>`select id from webhooks where id > ${after} order by id limit ${webhookPage}`;
      for (const { id } of page) {
        if (closed) return;
        await byCount(id);
      }
      if (page.length < webhookPage) return;
      after = page[page.length - 1]!.id;
    }
  }

  async function pass(): Promise<void> {
    if (opts.maxAgeMs > 0) await byAge();
    if (opts.maxRequests === 0 || closed) return;
    // Taken before the work starts: webhooks written meanwhile are checked by the next pass.
    const all = sweepAll;
    const ids = [...touched];
    sweepAll = false;
    touched.clear();
    let done = 0;
    try {
      if (all) await everyWebhook();
      else for (; done < ids.length && !closed; done++) await byCount(ids[done]!);
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
    /** Starts the first pass after one interval. Does nothing when neither limit is set. */
    start(): void {
      if (enabled && timer === undefined && !closed) schedule();
    },

    /** Notes the webhooks of committed rows, for the count limit of the next pass. */
    written(rows: readonly PendingRow[]): void {
      if (opts.maxRequests === 0) return;
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
