import { mayHaveCommitted } from './db/failure.js';
import { HttpError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { CapturedRow, Positions, Store } from './store.js';

export interface WriterOptions {
  maxRows: number;
  maxBytes: number;
  queueMaxBytes: number;
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
  row: CapturedRow;
  /** True once nobody can be told the outcome (the sender's connection closed). */
  abandoned: (() => boolean) | undefined;
  resolve: (r: WriteResult) => void;
  reject: (e: HttpError) => void;
}

/**
 * Group commit: every capture waiting when a flush starts goes into one INSERT, and the next
 * flush starts as soon as the previous one returns. Under load batches grow by themselves; when
 * idle a lone request is written at once.
 *
 * One flush at a time: ids are assigned in arrival order, so this process commits in id order.
 * Resume no longer depends on it (each batch gets a commit-ordered position per webhook, see
 * store.ts), so several flushes in flight are possible; that change is still to be made.
 *
 * `onCommitted` runs after each commit, with the rows stored, in id order, and the position each
 * of their webhooks reached (empty for a settled batch: those are not known).
 *
 * A 503 must mean "not stored". When the connection breaks after the INSERT was sent, the batch
 * may have committed (the backend finishes a statement it has received, and a COMMIT whose answer
 * is lost is still a commit). Such a batch is *settled*: once Postgres answers again, the ids it
 * holds are stored ones (2xx) and the others were not (503). While a batch is being settled the
 * writer takes no new rows (503 at once: storage is unavailable), so commit order stays id order.
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
  onCommitted: (rows: CapturedRow[], positions: Positions) => void;
}

export function createWriter(store: Store, opts: WriterOptions, { metrics, log, onCommitted }: Deps) {
  let queue: Waiting[] = [];
  let queuedBytes = 0;
  let flushing = false;
  let closed = false;
  let idle: (() => void) | undefined;
  let healthy = true;
  let settling = false;

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
    const batch = take();
    if (batch.length === 0) return flushed();
    const rows = batch.map((w) => w.row);
    metrics.batchSize.observe(rows.length);
    // What each row gets: its verdict, or undefined for a 503.
    let verdict: (row: CapturedRow) => WriteResult | undefined;
    let positions: Positions = new Map();
    try {
      const reached = await store.insertRequests(rows);
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
    const committed: CapturedRow[] = [];
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
    flushed();
  }

  function flushed() {
    flushing = false;
    if (queue.length > 0) schedule();
    else idle?.();
  }

  /** Asks until Postgres answers which rows of a batch were committed, or the time is up. */
  async function settle(rows: CapturedRow[], err: unknown): Promise<Set<string> | undefined> {
    log.warn('connection lost during a batch insert; finding out whether it committed', { rows: rows.length, err });
    settling = true;
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
      settling = false;
    }
  }

  function schedule() {
    flushing = true;
    // setImmediate, not a microtask: every request uWS hands us in this I/O turn joins the batch.
    setImmediate(flush);
  }

  return {
    /**
     * Resolves once the row is committed; rejects with a 503 HttpError when it cannot be.
     * `abandoned` says whether the row's sender went away: such a row is dropped, not stored.
     */
    write(row: CapturedRow, abandoned?: () => boolean): Promise<WriteResult> {
      if (closed) return Promise.reject(new HttpError('draining'));
      if (settling) return Promise.reject(new HttpError('storage_unavailable'));
      if (queuedBytes + row.json.length > opts.queueMaxBytes) {
        return Promise.reject(new HttpError('overloaded'));
      }
      return new Promise<WriteResult>((resolve, reject) => {
        queue.push({ row, abandoned, resolve, reject });
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

