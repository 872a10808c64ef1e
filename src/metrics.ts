import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { httpErrors } from './errors.js';
import { wsErrorMessages, type WsErrorCode } from './protocol.js';

/** Every status an HTTP error of the table (errors.ts) is answered with. */
const errorStatuses: readonly number[] = [...new Set(Object.values(httpErrors).map((e) => e.status))].sort((a, b) => a - b);

/**
 * The service's metrics, rendered by prom-client in the Prometheus text format, beside
 * prom-client's default process metrics (CPU, memory, heap, GC, event-loop lag, open fds).
 *
 * The counters and gauges that move on the hot path (every capture, every publish) stay plain
 * numbers that prom-client reads when /metrics is scraped (`collect`), so a capture pays one
 * addition, not a call into the library. Metrics that move rarely (per batch, per close) are
 * prom-client objects used directly.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  function counter(name: string, help: string) {
    let value = 0;
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value);
      },
    });
    return {
      inc(by = 1) {
        value += by;
      },
      get value() {
        return value;
      },
    };
  }

  /**
   * A counter by one label. The `known` values are exported at 0 from the start, so that an
   * alert on the series can tell "none yet" from "not exported".
   */
  function labelledCounter<K extends string | number>(name: string, help: string, label: string, known: readonly K[]) {
    const values = new Map<K, number>(known.map((k) => [k, 0]));
    new Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [key, value] of values) this.inc({ [label]: String(key) }, value);
      },
    });
    return {
      inc(key: K, by = 1) {
        values.set(key, (values.get(key) ?? 0) + by);
      },
      get(key: K) {
        return values.get(key) ?? 0;
      },
    };
  }

  function gauge(name: string, help: string) {
    let value = 0;
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value);
      },
    });
    return {
      inc(by = 1) {
        value += by;
      },
      dec(by = 1) {
        value -= by;
      },
      get value() {
        return value;
      },
    };
  }

  const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, buckets, registers });

  const m = {
    captures: counter('hooky_captures_total', 'Requests captured and committed'),
    captureErrors: labelledCounter('hooky_capture_errors_total', 'Capture requests answered with an error, by HTTP status', 'status', errorStatuses),
    batchSize: histogram('hooky_batch_rows', 'Rows per group-commit INSERT', [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]),
    batchSeconds: histogram('hooky_batch_seconds', 'Time from sending a group-commit INSERT to its answer', [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2]),
    batchFailures: counter('hooky_batch_failures_total', 'Group-commit INSERTs that failed'),
    capturesDropped: counter('hooky_captures_dropped_total', 'Captures not stored because their connection closed while they waited for the writer'),
    queued: gauge('hooky_writer_queue', 'Captures waiting for the writer'),
    inflightBytes: gauge('hooky_inflight_body_bytes', 'Body bytes being received over every capture connection (HOOKY_MAX_INFLIGHT_BYTES)'),
    readBytes: gauge('hooky_read_bytes_held', 'Payload bytes held for listings and replays being sent (HOOKY_MAX_READ_BYTES)'),
    readRefusals: counter('hooky_read_refusals_total', 'Listings and replays refused (503 / OVERLOADED) at HOOKY_MAX_READ_BYTES'),
    publishes: counter('hooky_publishes_total', 'new-request events published to rooms'),
    openSockets: gauge('hooky_websocket_connections', 'Open WebSocket connections'),
    joinedRooms: gauge('hooky_room_memberships', 'Room memberships over all open connections'),
    backpressureCloses: counter('hooky_websocket_backpressure_closes_total', 'Connections closed because they could not keep up'),
    rateLimitCloses: counter('hooky_websocket_rate_limit_closes_total', 'Connections closed (1008) for going on past the message rate limit'),
    wsErrors: labelledCounter('hooky_websocket_errors_total', 'error events sent to clients, by code', 'code', Object.keys(wsErrorMessages) as WsErrorCode[]),
    rejectedUpgrades: labelledCounter('hooky_websocket_rejected_upgrades_total', 'WebSocket upgrades refused, by HTTP status', 'status', errorStatuses),
    relayFilled: counter('hooky_relay_filled_total', 'Committed requests read back from Postgres for rooms served here (another instance committed them, or a gap was filled)'),
    busResumes: counter('hooky_bus_resumes_total', 'Times the bus between instances was cut off and came back'),
    retentionDeleted: labelledCounter('hooky_retention_deleted_total', 'Captured requests deleted by retention, by rule', 'rule', ['max_age', 'max_requests', 'max_bytes'] as const),
    retentionSized: counter('hooky_retention_rows_sized_total', 'Stored requests whose payload size the byte rule of retention read'),
    // The open files themselves are prom-client's process_open_fds and process_max_fds.
    acceptPauses: counter('hooky_accept_pauses_total', 'Times new connections stopped being accepted because open files neared the limit'),
    eventLoopDelay: histogram('hooky_event_loop_delay_seconds', 'How late a 10 ms timer fires on the event loop', [
      0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    ]),
  };
  const stopTimer = eventLoopDelay(m.eventLoopDelay);
  return {
    ...m,
    /** The Prometheus text of every metric (prom-client collects asynchronously). */
    render: (): Promise<string> => registry.metrics(),
    contentType: registry.contentType,
    /** For a worker's share of the service's metrics (cluster.ts). */
    registry,
    /** Stops the event-loop timer. Safe to call twice. */
    close: stopTimer,
  };
}

/**
 * Event-loop delay: how late a 10 ms timer fires, observed into a histogram, so a scraper can
 * take the difference of two scrapes and read the quantiles of any window (prom-client's own
 * `nodejs_eventloop_lag_*` gauges report percentiles since start, which cannot be windowed).
 * The timer is unref'd and costs 100 callbacks a second.
 */
function eventLoopDelay(h: Histogram, intervalMs = 10) {
  let expected = performance.now() + intervalMs;
  let timer: NodeJS.Timeout;
  const tick = () => {
    const now = performance.now();
    h.observe(Math.max(0, now - expected) / 1000);
    expected = now + intervalMs;
    timer = setTimeout(tick, intervalMs).unref();
  };
  timer = setTimeout(tick, intervalMs).unref();
  return () => clearTimeout(timer);
}

export type Metrics = ReturnType<typeof createMetrics>;
