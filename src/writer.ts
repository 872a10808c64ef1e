import { HttpError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { PendingRow, Store } from './store.js';

export interface WriterOptions {
  maxRows: number;
  maxBytes: number;
  queueMaxBytes: number;
}

/** `stored`: committed. `gone`: its webhook was deleted before the commit; nothing was stored. */
export type WriteResult = 'stored' | 'gone';

interface Waiting {
  row: PendingRow;
  resolve: (r: WriteResult) => void;
  reject: (e: HttpError) => void;
}

/**
 * Group commit: every capture waiting when a flush starts goes into one INSERT, and the next
 * flush starts as soon as the previous one returns. Under load batches grow by themselves; when
 * idle a lone request is written at once.
 *
 * One flush at a time, on purpose: ids are assigned in arrival order, so commits then happen in
 * id order, and a client resuming with `since` = the last id it saw can never skip a request
 * that commits later with a smaller id.
 *
 * `onCommitted` runs after each commit, with the rows stored, in id order.
 */
export function createWriter(store: Store, opts: WriterOptions, metrics: Metrics, log: Logger, onCommitted: (rows: PendingRow[]) => void) {
  let queue: Waiting[] = [];
  let queuedBytes = 0;
  let flushing = false;
  let closed = false;
  let idle: (() => void) | undefined;
  let healthy = true;

  function take(): Waiting[] {
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < opts.maxRows) {
      bytes += queue[n]!.row.json.length;
      n++;
      if (bytes >= opts.maxBytes) break;
    }
    const batch = n === queue.length ? queue : queue.slice(0, n);
    queue = n === queue.length ? [] : queue.slice(n);
    queuedBytes -= bytes;
    metrics.queued.dec(n);
    return batch;
  }

  async function flush(): Promise<void> {
    const batch = take();
    const rows = batch.map((w) => w.row);
    metrics.batchSize.observe(rows.length);
    let result: Awaited<ReturnType<Store['insertRequests']>> | undefined;
    try {
      result = await store.insertRequests(rows);
      healthy = true;
    } catch (err) {
      healthy = false;
      metrics.batchFailures.inc();
      log.error('batch insert failed; answering 503', { rows: rows.length, err });
      const unavailable = new HttpError('storage_unavailable');
      for (const w of batch) w.reject(unavailable);
    }
    if (result !== undefined) {
      const { ids } = result;
      for (const w of batch) w.resolve(ids === undefined || ids.has(w.row.id) ? 'stored' : 'gone');
      // The rows are committed whatever happens here: a failure to publish is logged, not a 503.
      try {
        if (result.count > 0) onCommitted(ids === undefined ? rows : rows.filter((r) => ids.has(r.id)));
      } catch (err) {
        log.error('publishing committed requests failed', { err });
      }
    }
    flushing = false;
    if (queue.length > 0) schedule();
    else idle?.();
  }

  function schedule() {
    flushing = true;
    // setImmediate, not a microtask: every request uWS hands us in this I/O turn joins the batch.
    setImmediate(flush);
  }

  return {
    /** Resolves once the row is committed; rejects with a 503 HttpError when it cannot be. */
    write(row: PendingRow): Promise<WriteResult> {
      if (closed) return Promise.reject(new HttpError('draining'));
      if (queuedBytes + row.json.length > opts.queueMaxBytes) {
        return Promise.reject(new HttpError('overloaded'));
      }
      return new Promise<WriteResult>((resolve, reject) => {
        queue.push({ row, resolve, reject });
        queuedBytes += row.json.length;
        metrics.queued.inc();
        if (!flushing) schedule();
      });
    },

    /** False after a failed insert, until one succeeds. */
    get healthy() {
      return healthy;
    },

    get pending() {
      return queue.length;
    },

    /** Refuses new rows and resolves once every accepted row is committed or answered. */
    close(): Promise<void> {
      closed = true;
      if (!flushing && queue.length === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const prev = idle;
        idle = () => {
          prev?.();
          resolve();
        };
      });
    },
  };
}

export type Writer = ReturnType<typeof createWriter>;
