import { mayHaveCommitted } from './db/failure.js';
import { HttpError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { CapturedRow, Positions, Store } from './store.js';
import { within } from './timeout.js';

export interface WriterOptions {
  maxRows: number;
  maxBytes: number;
  queueMaxBytes: number;
  /** Lanes: batches out at once at most, each on its own pool connection. */
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
  row: CapturedRow;
  /** True once nobody can be told the outcome (the sender's connection closed). */
  abandoned: (() => boolean) | undefined;
  resolve: (r: WriteResult) => void;
  reject: (e: HttpError) => void;
}

/**
 * Group commit: every capture waiting when a flush starts goes into one INSERT. Under load batches
 * grow by themselves; when idle a lone request is written at once.
 *
 * `opts.flushes` lanes, each with its own queue and at most one batch out (on its own pool
 * connection); a webhook always goes to the same lane (`laneOf`). So batches out at once never
 * share a webhook: none waits for another's position lock, which is held through the commit and
 * so through its WAL flush (store.ts), and their commits can share one WAL flush. One webhook
 * still has one batch out at a time, and this process commits it in id order. Batches of
 * different lanes commit, and are answered, in any order: resume does not depend on it (each
 * batch gets a commit-ordered position per webhook), and the relay publishes each room in
 * position order whatever order its batches are reported in.
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
 * unavailable) and no lane sends a new batch; the rows already waiting go once every settle is
 * over.
 * Only a batch still unsettled when settleTimeoutMs runs out gets a 503 that may hide a row.
 *
 * A row is stored only if it can still be answered: one whose sender went away while it waited
 * is dropped when its batch is taken, so a sender that retries creates no duplicate. Once the
 * batch is sent, a sender that goes away no longer changes anything: the row is stored.
 */
interface Deps {
  metrics: Metrics;
  log: Logger;
  /** Called once per committed batch as it is answered (one webhook's in commit order), with the positions it reached. */
  onCommitted: (rows: CapturedRow[], positions: Positions) => void;
}

/**
 * The lane of a webhook among `lanes`: a string hash of its id. Each lane has at most one batch
 * out, so the batches out at once never share a webhook.
 */
export function laneOf(webhookId: string, lanes: number): number {
  let h = 0;
  for (let i = 0; i < webhookId.length; i++) h = (Math.imul(h, 31) + webhookId.charCodeAt(i)) | 0;
  return (h >>> 0) % lanes;
}

/** Rows waiting for one lane's next batch, and that lane's one flush. */
interface Lane {
  queue: Waiting[];
  /** A batch of this lane is sent and not yet answered (settling included). */
  out: boolean;
  /** A flush of this lane is about to start. */
  scheduled: boolean;
}

export function createWriter(store: Store, opts: WriterOptions, { metrics, log, onCommitted }: Deps) {
  const lanes: Lane[] = Array.from({ length: opts.flushes }, () => ({ queue: [], out: false, scheduled: false }));
  const lane = opts.flushes === 1 ? () => lanes[0]! : (webhookId: string) => lanes[laneOf(webhookId, opts.flushes)]!;
  let queuedBytes = 0;
  let closed = false;
  let idle: (() => void) | undefined;
  let healthy = true;
  // Batches being settled: several may be, when one outage cut off every connection.
  let settling = 0;

  function take(l: Lane): Waiting[] {
    const queue = l.queue;
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < opts.maxRows) {
      const size = queue[n]!.row.json.length;
      // At most maxBytes of payload; a row larger than that alone goes by itself.
      if (n > 0 && bytes + size > opts.maxBytes) break;
      bytes += size;
      n++;
    }
    const taken = n === queue.length ? queue : queue.slice(0, n);
    l.queue = n === queue.length ? [] : queue.slice(n);
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

  async function flush(l: Lane): Promise<void> {
    l.scheduled = false;
    // The settle's end starts it again.
    if (settling > 0) return;
    const batch = take(l);
    if (batch.length === 0) return flushed(l);
    l.out = true;
    const rows = batch.map((w) => w.row);
    metrics.batchSize.observe(rows.length);
    const sent = performance.now();
    // What each row gets: its verdict, or undefined for a 503.
    let verdict: (row: CapturedRow) => WriteResult | undefined;
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
    l.out = false;
    flushed(l);
  }

  function flushed(l: Lane) {
    if (l.queue.length > 0) schedule(l);
    else if (lanes.every((x) => !x.out && !x.scheduled && x.queue.length === 0)) idle?.();
  }

  /** Asks until Postgres answers which rows of a batch were committed, or the time is up. */
  async function settle(rows: CapturedRow[], err: unknown): Promise<Set<string> | undefined> {
    log.warn('connection lost during a batch insert; finding out whether it committed', { rows: rows.length, err });
    settling++;
    const deadline = Date.now() + opts.settleTimeoutMs;
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, opts.settleIntervalMs ?? 250));
        try {
          // Bounded: while Postgres refuses connections postgres.js holds the query until it can connect.
          const ids = await within(store.storedIds(rows.map((r) => r.id)), deadline - Date.now());
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
      // Every lane held its rows meanwhile (this batch's lane goes on when its flush ends).
      if (--settling === 0) for (const x of lanes) if (x.queue.length > 0) schedule(x);
    }
  }

  /** Starts the lane's flush on the next turn, unless it is about to start or its batch is out. */
  function schedule(l: Lane) {
    if (l.scheduled || l.out || settling > 0) return;
    l.scheduled = true;
    // setImmediate, not a microtask: every request uWS hands us in this I/O turn joins the batch.
    setImmediate(flush, l);
  }

  return {
    /**
     * Resolves once the row is committed; rejects with a 503 HttpError when it cannot be.
     * `abandoned` says whether the row's sender went away: such a row is dropped, not stored.
     */
    write(row: CapturedRow, abandoned?: () => boolean): Promise<WriteResult> {
      if (closed) return Promise.reject(new HttpError('draining'));
      if (settling > 0) return Promise.reject(new HttpError('storage_unavailable'));
      // A row larger than the ceiling is taken into an empty queue: refused, its sender would
      // retry the 503 for ever.
      if (queuedBytes > 0 && queuedBytes + row.json.length > opts.queueMaxBytes) {
        return Promise.reject(new HttpError('overloaded'));
      }
      return new Promise<WriteResult>((resolve, reject) => {
        const l = lane(row.webhookId);
        l.queue.push({ row, abandoned, resolve, reject });
        queuedBytes += row.json.length;
        metrics.queued.inc();
        schedule(l);
      });
    },

    /** False after a failed insert, until one succeeds. */
    get healthy() {
      return healthy;
    },

    get pending() {
      return lanes.reduce((n, l) => n + l.queue.length, 0);
    },

    /** Refuses new rows and resolves once every accepted row is committed or answered. */
    close(): Promise<void> {
      closed = true;
      if (lanes.every((l) => !l.out && !l.scheduled && l.queue.length === 0)) return Promise.resolve();
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
