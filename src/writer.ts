import { mayHaveCommitted } from './db/failure.js';
import { HttpError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { PendingRow, Positions, Store } from './store.js';

export interface WriterOptions {
  maxRows: number;
  maxBytes: number;
  queueMaxBytes: number;
  /** Batches sent at once, each on its own pool connection. */
  flushes: number;
  /** How long to keep asking whether a batch whose connection broke was committed, ms. */
  settleTimeoutMs: number;
  /** Pause between those questions, ms. */
  settleIntervalMs?: number;
}

/**
 * `stored`: committed. `gone`: its webhook was deleted before the commit; nothing was stored.
 * `dropped`: its sender went away before its batch was sent, so it was not stored.
 */
export type WriteResult = 'stored' | 'gone' | 'dropped';

interface Waiting {
  row: PendingRow;
  /** True once nobody can be told the outcome (the sender's connection closed). */
  abandoned: (() => boolean) | undefined;
  resolve: (r: WriteResult) => void;
  reject: (e: HttpError) => void;
}

/**
 * Group commit: every capture waiting when a flush starts goes into one INSERT. Up to
 * `opts.flushes` batches are out at once, each on its own pool connection; a flush starts as
 * soon as rows wait and one of them is free. Under load batches grow by themselves; when idle a
 * lone request is written at once.
 *
 * Batches out at once may commit in any order, and their answers come back in any order: resume
 * does not depend on it (each batch gets a commit-ordered position per webhook, see store.ts),
 * and the relay publishes each room in position order, holding a batch whose predecessor has
 * not been reported yet.
 *
 * `onCommitted` runs after each commit, with the rows stored, in id order, and the position each
 * of their webhooks reached (empty for a settled batch: those are not known).
 *
 * A 503 must mean "not stored". When the connection breaks after the INSERT was sent, the batch
 * may have committed (the backend finishes a statement it has received, and a COMMIT whose answer
 * is lost is still a commit). Such a batch is *settled*: once Postgres answers again, the ids it
 * holds are stored ones (2xx) and the others were not (503). The answer concerns that batch's ids
 * alone, so other batches out meanwhile change nothing: each finishes, or is settled, on its own.
 * While any batch is being settled the writer takes no new rows (503 at once: storage is
 * unavailable) and sends no new batch; the rows already waiting go once every settle is over.
 * Only a batch still unsettled when settleTimeoutMs runs out gets a 503 that may hide a row.
 *
 * A row is stored only if it can still be answered: one whose sender went away while it waited
 * is dropped when its batch is taken, so a sender that retries creates no duplicate. Once the
 * batch is sent, a sender that goes away no longer changes anything: the row is stored.
 */
interface Deps {
  metrics: Metrics;
  log: Logger;
  /** Called once per committed batch, in commit order, with the positions it reached. */
  onCommitted: (rows: PendingRow[], positions: Positions) => void;
}

export function createWriter(store: Store, opts: WriterOptions, { metrics, log, onCommitted }: Deps) {
  let queue: Waiting[] = [];
  let queuedBytes = 0;
  // Batches sent and not yet answered (settling included), and whether a flush is about to start.
  let out = 0;
  let scheduled = false;
  let closed = false;
  let idle: (() => void) | undefined;
  let healthy = true;
  // Batches being settled: several may be, when one outage cut off every connection.
  let settling = 0;

  function take(): Waiting[] {
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < opts.maxRows) {
      bytes += queue[n]!.row.json.length;
      n++;
      if (bytes >= opts.maxBytes) break;
    }
    const taken = n === queue.length ? queue : queue.slice(0, n);
    queue = n === queue.length ? [] : queue.slice(n);
    queuedBytes -= bytes;
    metrics.queued.dec(n);
    // Checked once, here: after this the batch is sent and its rows are stored whatever happens.
    const batch: Waiting[] = [];
    for (const w of taken) {
      if (w.abandoned?.()) {
        metrics.capturesDropped.inc();
        w.resolve('dropped');
      } else batch.push(w);
    }
    return batch;
  }

  async function flush(): Promise<void> {
    scheduled = false;
    if (settling > 0) return;
    const batch = take();
    if (batch.length === 0) return flushed();
    out++;
    // More rows than one batch takes, and a connection free: the next batch goes now too.
    if (queue.length > 0) schedule();
    const rows = batch.map((w) => w.row);
    metrics.batchSize.observe(rows.length);
    const sent = performance.now();
    // What each row gets: its verdict, or undefined for a 503.
    let verdict: (row: PendingRow) => WriteResult | undefined;
    let positions: Positions = new Map();
    try {
      const reached = await store.insertRequests(rows);
      metrics.batchSeconds.observe((performance.now() - sent) / 1000);
      healthy = true;
      positions = reached;
      // A row the INSERT skipped had lost its webhook meanwhile.
      verdict = (row) => (reached.has(row.webhookId) ? 'stored' : 'gone');
    } catch (err) {
      healthy = false;
      metrics.batchFailures.inc();
      const stored = mayHaveCommitted(err) ? await settle(rows, err) : undefined;
      if (stored === undefined) log.error('batch insert failed; answering 503', { rows: rows.length, err });
      // Settled: a row that is not there was not stored.
      verdict = (row) => (stored?.has(row.id) ? 'stored' : undefined);
    }
    const committed: PendingRow[] = [];
    let unavailable: HttpError | undefined;
    for (const w of batch) {
      const v = verdict(w.row);
      if (v === 'stored') committed.push(w.row);
      if (v !== undefined) w.resolve(v);
      else w.reject((unavailable ??= new HttpError('storage_unavailable')));
    }
    // The rows are committed whatever happens here: a failure to publish is logged, not a 503.
    try {
      if (committed.length > 0) onCommitted(committed, positions);
    } catch (err) {
      log.error('publishing committed requests failed', { err });
    }
    out--;
    flushed();
  }

  function flushed() {
    if (queue.length > 0) schedule();
    else if (out === 0 && !scheduled) idle?.();
  }

  /** Asks until Postgres answers which rows of a batch were committed, or the time is up. */
  async function settle(rows: PendingRow[], err: unknown): Promise<Set<string> | undefined> {
    log.warn('connection lost during a batch insert; finding out whether it committed', { rows: rows.length, err });
    settling++;
    const deadline = Date.now() + opts.settleTimeoutMs;
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, opts.settleIntervalMs ?? 250));
        try {
          const ids = await store.storedIds(rows.map((r) => r.id));
          healthy = true;
          log.info('batch settled', { rows: rows.length, committed: ids.size });
          return ids;
        } catch (again) {
          if (Date.now() >= deadline) {
            log.error('could not settle a batch in time: its captures get 503 though some may be stored', { rows: rows.length, err: again });
            return undefined;
          }
        }
      }
    } finally {
      settling--;
    }
  }

  /** Starts a flush on the next turn, unless one is about to start or every connection is busy. */
  function schedule() {
    if (scheduled || out >= opts.flushes || settling > 0) return;
    scheduled = true;
    // setImmediate, not a microtask: every request uWS hands us in this I/O turn joins the batch.
    setImmediate(flush);
  }

  return {
    /**
     * Resolves once the row is committed; rejects with a 503 HttpError when it cannot be.
     * `abandoned` says whether the row's sender went away: such a row is dropped, not stored.
     */
    write(row: PendingRow, abandoned?: () => boolean): Promise<WriteResult> {
      if (closed) return Promise.reject(new HttpError('draining'));
      if (settling > 0) return Promise.reject(new HttpError('storage_unavailable'));
      if (queuedBytes + row.json.length > opts.queueMaxBytes) {
        return Promise.reject(new HttpError('overloaded'));
      }
      return new Promise<WriteResult>((resolve, reject) => {
        queue.push({ row, abandoned, resolve, reject });
        queuedBytes += row.json.length;
        metrics.queued.inc();
        schedule();
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
      if (out === 0 && !scheduled && queue.length === 0) return Promise.resolve();
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

