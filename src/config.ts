import * as v from 'valibot';
import { tokenPattern } from './protocol.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** An environment variable holding a whole number within [min, max]. */
const int = (fallback: number, min: number, max: number) =>
  v.pipe(
    v.optional(v.string(), String(fallback)),
    v.trim(),
    v.regex(/^\d+$/, 'must be a whole number'),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

const bool = (fallback: boolean) =>
  v.pipe(
    v.optional(v.string(), String(fallback)),
    v.trim(),
    v.toLowerCase(),
    v.picklist(['true', 'false', '1', '0', 'yes', 'no'], 'must be true or false'),
    v.transform((s) => s === 'true' || s === '1' || s === 'yes'),
  );

/** false/0: ignore X-Forwarded-For; true/1: one proxy in front; N: a chain of N proxies. */
const proxyHops = v.pipe(
  v.optional(v.string(), 'false'),
  v.trim(),
  v.toLowerCase(),
  v.regex(/^(true|false|yes|no|\d{1,2})$/, 'must be true, false or a number of proxies'),
  v.transform((s) => (s === 'true' || s === 'yes' ? 1 : s === 'false' || s === 'no' ? 0 : Number(s))),
);

const optionalText = v.pipe(
  v.optional(v.string(), ''),
  v.trim(),
  v.transform((s) => (s === '' ? undefined : s)),
);

const databaseUrl = v.pipe(
  optionalText,
  v.check((s) => s === undefined || /^postgres(ql)?:\/\//.test(s), 'must start with postgres:// or postgresql://'),
  // `postgres://user@/db` is libpq's, not a URL: postgres.js cannot read it either.
  v.check((s) => s === undefined || URL.canParse(s), 'must be a URL: postgres://user:password@host:port/database (a Unix socket: postgres://user@localhost/database?host=/var/run/postgresql)'),
);

/** Comma-separated NATS servers, nats://host:port or tls://host:port; unset: the bus is LISTEN/NOTIFY. */
const natsUrl = v.pipe(
  optionalText,
  v.transform((s) => (s === undefined ? undefined : Object.freeze(s.split(',').map((u) => u.trim()).filter((u) => u !== '')))),
  v.check(
    (list) => list === undefined || (list.length > 0 && list.every((u) => URL.canParse(u) && /^(nats|tls):$/.test(new URL(u).protocol))),
    'must be a comma-separated list of nats://host:port (or tls://host:port) servers',
  ),
);

/** Optional bearer token: URL- and subprotocol-safe characters, long enough not to be guessed. */
const apiToken = v.pipe(
  optionalText,
  v.check(
    (s) => s === undefined || (tokenPattern.test(s) && s.length >= 16 && s.length <= 512),
    'must be 16 to 512 characters from A-Z a-z 0-9 . _ ~ + - (e.g. the output of `openssl rand -hex 32`)',
  ),
);

/** Comma-separated browser origins such as https://app.example.com; unset allows any. */
const origins = v.pipe(
  optionalText,
  v.transform((s) => (s === undefined ? undefined : Object.freeze(s.split(',').map((o) => o.trim().toLowerCase()).filter((o) => o !== '')))),
  v.check(
    (list) => list === undefined || (list.length > 0 && list.every((o) => URL.canParse(o) && new URL(o).origin === o)),
    'must be a comma-separated list of origins such as https://app.example.com (scheme, host and port only, no path)',
  ),
);

const publicUrl = v.pipe(
  optionalText,
  v.check((s) => s === undefined || URL.canParse(s), 'must be an absolute URL such as https://hooks.example.com'),
  v.transform((s) => s?.replace(/\/+$/, '')),
);

const text = (fallback: string) => v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty('must not be empty')), fallback);
const hoursAsMs = (fallback: number, max: number) => v.pipe(int(fallback, 0, max), v.transform((h) => h * 3600_000));

/** One setting: the environment variable it is read from, and its schema (default, unit, range). */
const env = <S extends v.GenericSchema<string | undefined, unknown>>(name: string, schema: S) => ({ name, schema });

/**
 * Every setting, grouped by the module it configures, each read from one environment variable
 * once at start-up. Defaults and units are listed here and in the README's configuration table:
 * adding a setting is one line here and one README row.
 */
const settings = {
  server: {
    port: env('PORT', int(3000, 0, 65535)), // 0 picks a free port
    host: env('HOST', text('0.0.0.0')),
    publicUrl: env('HOOKY_PUBLIC_URL', publicUrl), // base of a webhook's `url`; default http://localhost:<port>
    logLevel: env('HOOKY_LOG_LEVEL', v.optional(v.picklist(['debug', 'info', 'warn', 'error', 'silent']), 'info')),
    shutdownTimeoutMs: env('HOOKY_SHUTDOWN_TIMEOUT_MS', int(10_000, 0, 600_000)), // longest wait for in-flight work on SIGTERM
    workers: env('HOOKY_WORKERS', int(1, 1, 1024)), // processes serving one port (a primary starts them); 1 = one process, no primary
    sharePort: env('HOOKY_SHARE_PORT', bool(false)), // internal: set by hooky only for worker processes it starts itself, which share one port (SO_REUSEPORT)
  },
  db: {
    url: env('DATABASE_URL', databaseUrl), // unset: embedded PostgreSQL in HOOKY_DATA_DIR
    dataDir: env('HOOKY_DATA_DIR', text('./.hooky')),
    poolSize: env('HOOKY_PG_POOL_SIZE', int(10, 2, 200)), // connections to PostgreSQL
  },
  auth: {
    apiToken: env('HOOKY_API_TOKEN', apiToken), // unset: REST API and /ws are open; set: they need this token
    allowedOrigins: env('HOOKY_ALLOWED_ORIGINS', origins), // browser origins allowed to open /ws; unset: any
  },
  capture: {
    trustProxy: env('HOOKY_TRUST_PROXY', proxyHops), // proxies in front whose X-Forwarded-For entries are trusted: false, true (= 1) or a count
    maxBodyBytes: env('HOOKY_MAX_BODY_BYTES', int(10 * MiB, 0, 1024 * MiB)), // 10 MiB per captured body
    maxHeaders: env('HOOKY_MAX_HEADERS', int(48, 1, 1000)), // header fields per captured request; more: 431 (uWS itself stops at 48)
    maxHeaderBytes: env('HOOKY_MAX_HEADER_BYTES', int(16 * KiB, 1 * KiB, 1 * MiB)), // header names + values per captured request; more: 431
    maxInflightBytes: env('HOOKY_MAX_INFLIGHT_BYTES', int(128 * MiB, 1 * MiB, 16384 * MiB)), // body bytes being received at once over every capture; past it: 503
    benchNoop: env('HOOKY_BENCH_NOOP', bool(false)), // benchmarks only: ANY /bench/noop reads the body and answers 200, storing nothing
  },
  api: {
    maxApiBodyBytes: env('HOOKY_MAX_API_BODY_BYTES', int(1 * MiB, 1 * KiB, 64 * MiB)), // 1 MiB per REST request body
    maxWebhooks: env('HOOKY_MAX_WEBHOOKS', int(100_000, 0, 100_000_000)), // webhooks that may exist; past it, create answers 409 too_many_webhooks; 0 = no limit
    searchScanRows: env('HOOKY_SEARCH_SCAN_ROWS', int(10_000, 100, 1_000_000)), // requests one filtered page of GET /api/webhooks/:id/requests examines
  },
  /** Reading stored requests back: REST pages and `join` replays. */
  reads: {
    maxPageBytes: env('HOOKY_MAX_PAGE_BYTES', int(4 * MiB, 64 * KiB, 1024 * MiB)), // payload bytes per REST page and per replay page; always at least one request
    maxReadBytes: env('HOOKY_MAX_READ_BYTES', int(64 * MiB, 1 * MiB, 16384 * MiB)), // payload bytes held at once for every listing and replay; past it: 503 / OVERLOADED
    replayLimit: env('HOOKY_REPLAY_LIMIT', int(1000, 1, 100_000)), // requests replayed by one `join` with `since`
  },
  ws: {
    maxPayload: env('HOOKY_MAX_WS_PAYLOAD', int(64 * KiB, 256, 16 * MiB)), // 64 KiB per client frame; larger closes with 1009
    maxBuffer: env('HOOKY_WS_MAX_BUFFER', int(0, 0, 4096 * MiB)), // bytes queued for a slow client before it is closed; 0 = 2 × body limit + 1 MiB
    idleTimeout: env('HOOKY_WS_IDLE_TIMEOUT', int(60, 0, 960)), // seconds without traffic before a socket is pinged, then dropped
    maxRooms: env('HOOKY_MAX_ROOMS', int(100, 1, 100_000)), // rooms one connection may join
    maxConnections: env('HOOKY_MAX_CONNECTIONS', int(10_000, 1, 1_000_000)), // open WebSockets; past it upgrades get 503
    rateLimit: env('HOOKY_WS_RATE_LIMIT', int(100, 0, 1_000_000)), // client frames per second per connection, sustained; 0 = no limit
    rateBurst: env('HOOKY_WS_RATE_BURST', int(200, 1, 1_000_000)), // client frames a connection may send at once above the rate
  },
  writer: {
    maxRows: env('HOOKY_BATCH_MAX_ROWS', int(1000, 1, 100_000)), // rows in one group-commit INSERT
    maxBytes: env('HOOKY_BATCH_MAX_BYTES', int(16 * MiB, 64 * KiB, 1024 * MiB)), // payload bytes in one INSERT
    queueMaxBytes: env('HOOKY_QUEUE_MAX_BYTES', int(256 * MiB, 1 * MiB, 16384 * MiB)), // captures waiting for the writer; past it: 503
    flushes: env('HOOKY_WRITER_FLUSHES', int(1, 1, 32)), // batches sent at once, each on its own pool connection (keep below HOOKY_PG_POOL_SIZE)
    settleTimeoutMs: env('HOOKY_SETTLE_TIMEOUT_MS', int(5_000, 0, 600_000)), // how long to find out whether a batch cut off mid-commit was stored
  },
  retention: {
    maxRequests: env('HOOKY_RETENTION_MAX_REQUESTS', int(10_000, 0, 1_000_000_000)), // newest requests kept per webhook; 0 = no limit
    maxBytes: env('HOOKY_RETENTION_MAX_BYTES', int(1024 * MiB, 0, 64 * 1024 * 1024 * MiB)), // stored payload bytes kept per webhook (1 GiB), oldest deleted first; 0 = no limit
    maxAgeMs: env('HOOKY_RETENTION_MAX_AGE_HOURS', hoursAsMs(7 * 24, 100 * 365 * 24)), // given in hours (7 days), kept in ms; 0 = forever
    intervalMs: env('HOOKY_RETENTION_INTERVAL_MS', int(60_000, 10, 24 * 3600_000)), // pause between retention passes (1 minute)
    batch: env('HOOKY_RETENTION_BATCH', int(1000, 1, 100_000)), // rows per DELETE statement
  },
  /** The bus between instances: LISTEN/NOTIFY on DATABASE_URL, or NATS core when a URL is given. */
  bus: {
    natsServers: env('HOOKY_NATS_URL', natsUrl), // unset: instances talk through LISTEN/NOTIFY on DATABASE_URL; set: through NATS core
    natsPrefix: env(
      'HOOKY_NATS_PREFIX',
      v.optional(v.pipe(v.string(), v.trim(), v.regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be NATS subject tokens such as hooky or prod.hooky')), 'hooky'),
    ), // first tokens of every subject; one per deployment sharing a NATS
  },
  resend: {
    allow: env('HOOKY_RESEND_ALLOW', origins), // target origins resend may reach, e.g. http://localhost:4000; unset: resend is off
    timeoutMs: env('HOOKY_RESEND_TIMEOUT_MS', int(10_000, 100, 120_000)), // longest a resend waits for the target's answer (10 s)
  },
};

type Settings = typeof settings;
/** The parsed settings, grouped as above; every group and the whole are frozen. */
export type Config = {
  readonly [G in keyof Settings]: { readonly [K in keyof Settings[G]]: Settings[G][K] extends { schema: infer S extends v.GenericSchema } ? v.InferOutput<S> : never };
};

/** The environment's schema: every variable of `settings`, flat, as the environment has them. */
export const EnvSchema = v.object(
  Object.fromEntries(Object.values(settings).flatMap((group) => Object.values(group).map((s) => [s.name, s.schema]))) as Record<string, v.GenericSchema>,
);

/**
 * Why `value` is not a valid value of the environment variable `name`, or undefined when it is:
 * for a command-line flag that stands for one (`hooky serve --workers`).
 */
export function settingProblem(name: string, value: string): string | undefined {
  const schema = EnvSchema.entries[name];
  if (schema === undefined) throw new Error(`no setting ${name}`);
  const result = v.safeParse(schema, value, { abortPipeEarly: true });
  return result.success ? undefined : result.issues[0].message;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment once; throws a ConfigError listing every problem at once. */
export function loadConfig(environment: Record<string, string | undefined> = process.env): Config {
  const result = v.safeParse(EnvSchema, environment, { abortPipeEarly: true });
  if (!result.success) {
    throw new ConfigError(
      result.issues.map((issue) => {
        const key = v.getDotPath(issue) ?? '(environment)';
        return `${key}=${JSON.stringify(environment[key] ?? '')}: ${issue.message}`;
      }),
    );
  }
  const e = result.output as Record<string, unknown>;
  const grouped = Object.fromEntries(
    Object.entries(settings).map(([group, entries]) => [group, Object.fromEntries(Object.entries(entries).map(([key, s]) => [key, e[s.name]]))]),
  ) as { -readonly [G in keyof Config]: { -readonly [K in keyof Config[G]]: Config[G][K] } };

  // Settings whose value depends on another's.
  grouped.ws.maxBuffer ||= 2 * grouped.capture.maxBodyBytes + MiB;
  // A client rejoining every room after a reconnect sends one join per room at once. The bucket
  // takes a burst; more than a burst refused within the strike window closes it (1008).
  const { rateLimit, rateBurst, maxRooms } = grouped.ws;
  if (rateLimit > 0 && maxRooms > 2 * rateBurst) {
    throw new ConfigError([
      `HOOKY_WS_RATE_BURST=${rateBurst}: must be at least half of HOOKY_MAX_ROOMS (${maxRooms}), or a client rejoining its rooms after a reconnect is closed for its rate`,
    ]);
  }
  // Each batch out holds a pool connection until its answer; reads and NOTIFYs need one too.
  if (grouped.writer.flushes >= grouped.db.poolSize) {
    throw new ConfigError([`HOOKY_WRITER_FLUSHES=${grouped.writer.flushes}: must be below HOOKY_PG_POOL_SIZE (${grouped.db.poolSize}), or nothing but batches could reach PostgreSQL`]);
  }
  for (const group of Object.values(grouped)) Object.freeze(group);
  return Object.freeze(grouped);
}
