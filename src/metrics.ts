/**
 * Counters, gauges and one histogram, rendered in the Prometheus text format (version 0.0.4).
 * Plain numbers on the hot path; text is built only when /metrics is scraped.
 */
interface Metric {
  render(): string;
}

function counter(name: string, help: string) {
  let value = 0;
  return {
    inc(by = 1) {
      value += by;
    },
    get value() {
      return value;
    },
    render: () => `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name} ${value}\n`,
  };
}

function labelledCounter(name: string, help: string, label: string) {
  const values = new Map<string | number, number>();
  return {
    inc(key: string | number, by = 1) {
      values.set(key, (values.get(key) ?? 0) + by);
    },
    get(key: string | number) {
      return values.get(key) ?? 0;
    },
    render: () =>
      `# HELP ${name} ${help}\n# TYPE ${name} counter\n` +
      [...values].map(([k, v]) => `${name}{${label}="${k}"} ${v}\n`).join(''),
  };
}

function gauge(name: string, help: string) {
  let value = 0;
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
    render: () => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${value}\n`,
  };
}

function histogram(name: string, help: string, buckets: readonly number[]) {
  const counts = new Array<number>(buckets.length).fill(0);
  let sum = 0;
  let count = 0;
  return {
    observe(x: number) {
      sum += x;
      count++;
      for (let i = 0; i < buckets.length; i++) if (x <= buckets[i]!) counts[i]!++;
    },
    render: () =>
      `# HELP ${name} ${help}\n# TYPE ${name} histogram\n` +
      buckets.map((b, i) => `${name}_bucket{le="${b}"} ${counts[i]}\n`).join('') +
      `${name}_bucket{le="+Inf"} ${count}\n${name}_sum ${sum}\n${name}_count ${count}\n`,
  };
}

/**
 * Event-loop delay: how late a 10 ms timer fires, observed into a histogram, so a scraper can
 * take the difference of two scrapes and read the quantiles of any window. The timer is unref'd
 * and costs 100 callbacks a second.
 */
function eventLoopDelay(h: ReturnType<typeof histogram>, intervalMs = 10) {
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

export function createMetrics() {
  const m = {
    captures: counter('hooky_captures_total', 'Requests captured and committed'),
    captureErrors: labelledCounter('hooky_capture_errors_total', 'Capture requests answered with an error, by HTTP status', 'status'),
    batchSize: histogram('hooky_batch_rows', 'Rows per group-commit INSERT', [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]),
    batchFailures: counter('hooky_batch_failures_total', 'Group-commit INSERTs that failed'),
    queued: gauge('hooky_writer_queue', 'Captures waiting for the writer'),
    publishes: counter('hooky_publishes_total', 'new-request events published to rooms'),
    openSockets: gauge('hooky_websocket_connections', 'Open WebSocket connections'),
    joinedRooms: gauge('hooky_room_memberships', 'Room memberships over all open connections'),
    backpressureCloses: counter('hooky_websocket_backpressure_closes_total', 'Connections closed because they could not keep up'),
    rateLimitCloses: counter('hooky_websocket_rate_limit_closes_total', 'Connections closed (1008) for going on past the message rate limit'),
    wsErrors: labelledCounter('hooky_websocket_errors_total', 'error events sent to clients, by code', 'code'),
    rejectedUpgrades: labelledCounter('hooky_websocket_rejected_upgrades_total', 'WebSocket upgrades refused, by HTTP status', 'status'),
    relayFilled: counter('hooky_relay_filled_total', 'Committed requests read back from Postgres for rooms served here (another instance committed them, or a gap was filled)'),
    busResumes: counter('hooky_bus_resumes_total', 'Times the bus between instances was cut off and came back'),
    retentionDeleted: labelledCounter('hooky_retention_deleted_total', 'Captured requests deleted by retention, by rule', 'rule'),
    eventLoopDelay: histogram('hooky_event_loop_delay_seconds', 'How late a 10 ms timer fires on the event loop', [
      0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    ]),
  };
  const stopTimer = eventLoopDelay(m.eventLoopDelay);
  const all: Metric[] = Object.values(m);
  return {
    ...m,
    render(): string {
      return all.map((x) => x.render()).join('');
    },
    /** Stops the event-loop timer. Safe to call twice. */
    close: stopTimer,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
