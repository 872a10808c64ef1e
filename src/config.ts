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
  v.transform((s) => (s === undefined ? undefined : s.split(',').map((o) => o.trim().toLowerCase()).filter((o) => o !== ''))),
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

/**
 * Every setting, read from the environment once at start-up. Defaults and units are listed here
 * and in the README's configuration table.
 */
export const EnvSchema = v.object({
  PORT: int(3000, 0, 65535), // 0 picks a free port
  HOST: v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty('must not be empty')), '0.0.0.0'),
  DATABASE_URL: databaseUrl, // unset: embedded PostgreSQL in HOOKY_DATA_DIR
  HOOKY_DATA_DIR: v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty('must not be empty')), './.hooky'),
  HOOKY_PUBLIC_URL: publicUrl, // base of a webhook's `url`; default http://localhost:<port>
  HOOKY_LOG_LEVEL: v.optional(v.picklist(['debug', 'info', 'warn', 'error', 'silent']), 'info'),
  HOOKY_TRUST_PROXY: proxyHops, // proxies in front whose X-Forwarded-For entries are trusted: false, true (= 1) or a count
  HOOKY_MAX_BODY_BYTES: int(10 * MiB, 0, 1024 * MiB), // 10 MiB per captured body
  HOOKY_MAX_API_BODY_BYTES: int(1 * MiB, 1 * KiB, 64 * MiB), // 1 MiB per REST request body
  HOOKY_MAX_WS_PAYLOAD: int(64 * KiB, 256, 16 * MiB), // 64 KiB per client frame; larger closes with 1009
  HOOKY_WS_MAX_BUFFER: int(0, 0, 4096 * MiB), // bytes queued for a slow client before it is closed; 0 = 2 × body limit + 1 MiB
  HOOKY_WS_IDLE_TIMEOUT: int(60, 0, 960), // seconds without traffic before a socket is pinged, then dropped
  HOOKY_MAX_ROOMS: int(100, 1, 100_000), // rooms one connection may join
  HOOKY_MAX_CONNECTIONS: int(10_000, 1, 1_000_000), // open WebSockets; past it upgrades get 503
  HOOKY_WS_RATE_LIMIT: int(100, 0, 1_000_000), // client frames per second per connection, sustained; 0 = no limit
  HOOKY_WS_RATE_BURST: int(200, 1, 1_000_000), // client frames a connection may send at once above the rate
  HOOKY_MAX_HEADERS: int(48, 1, 1000), // header fields per captured request; more: 431 (uWS itself stops at 48)
  HOOKY_MAX_HEADER_BYTES: int(16 * KiB, 1 * KiB, 1 * MiB), // header names + values per captured request; more: 431
  HOOKY_API_TOKEN: apiToken, // unset: REST API and /ws are open; set: they need this token
  HOOKY_ALLOWED_ORIGINS: origins, // browser origins allowed to open /ws; unset: any
  HOOKY_RETENTION_MAX_REQUESTS: int(10_000, 0, 1_000_000_000), // newest requests kept per webhook; 0 = no limit
  HOOKY_RETENTION_MAX_BYTES: int(1024 * MiB, 0, 64 * 1024 * 1024 * MiB), // stored payload bytes kept per webhook (1 GiB), oldest deleted first; 0 = no limit
  HOOKY_RETENTION_MAX_AGE_HOURS: int(7 * 24, 0, 100 * 365 * 24), // hours a request is kept (7 days); 0 = forever
  HOOKY_RETENTION_INTERVAL_MS: int(60_000, 10, 24 * 3600_000), // pause between retention passes (1 minute)
  HOOKY_RETENTION_BATCH: int(1000, 1, 100_000), // rows per DELETE statement
  HOOKY_MAX_WEBHOOKS: int(100_000, 0, 100_000_000), // webhooks that may exist; past it, create answers 409 too_many_webhooks; 0 = no limit
  HOOKY_REPLAY_LIMIT: int(1000, 1, 100_000), // requests replayed by one `join` with `since`
  HOOKY_MAX_PAGE_BYTES: int(4 * MiB, 64 * KiB, 1024 * MiB), // payload bytes per REST page and per replay page; always at least one request
  HOOKY_MAX_READ_BYTES: int(64 * MiB, 1 * MiB, 16384 * MiB), // payload bytes held at once for every listing and replay; past it: 503 / OVERLOADED
  HOOKY_MAX_INFLIGHT_BYTES: int(128 * MiB, 1 * MiB, 16384 * MiB), // body bytes being received at once over every capture; past it: 503
  HOOKY_BATCH_MAX_ROWS: int(1000, 1, 100_000), // rows in one group-commit INSERT
  HOOKY_BATCH_MAX_BYTES: int(16 * MiB, 64 * KiB, 1024 * MiB), // payload bytes in one INSERT
  HOOKY_QUEUE_MAX_BYTES: int(256 * MiB, 1 * MiB, 16384 * MiB), // captures waiting for the writer; past it: 503
  HOOKY_PG_POOL_SIZE: int(10, 2, 200), // connections to PostgreSQL
  HOOKY_SHUTDOWN_TIMEOUT_MS: int(10_000, 0, 600_000), // longest wait for in-flight work on SIGTERM
  HOOKY_SETTLE_TIMEOUT_MS: int(5_000, 0, 600_000), // how long to find out whether a batch cut off mid-commit was stored
  HOOKY_SEARCH_SCAN_ROWS: int(10_000, 100, 1_000_000), // requests one filtered page of GET /api/webhooks/:id/requests examines
  HOOKY_RESEND_ALLOW: origins, // target origins resend may reach, e.g. http://localhost:4000; unset: resend is off
  HOOKY_RESEND_TIMEOUT_MS: int(10_000, 100, 120_000), // longest a resend waits for the target's answer (10 s)
  HOOKY_BENCH_NOOP: bool(false), // benchmarks only: ANY /bench/noop reads the body and answers 200, storing nothing
  HOOKY_WORKERS: int(1, 1, 1024), // processes serving one port (a primary starts them); 1 = one process, no primary
  HOOKY_SHARE_PORT: bool(false), // internal: set by hooky only for worker processes it starts itself, which share one port (SO_REUSEPORT)
});

type Env = v.InferOutput<typeof EnvSchema>;

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly publicUrl: string | undefined;
  readonly logLevel: Env['HOOKY_LOG_LEVEL'];
  /** How many proxies in front append to X-Forwarded-For; 0 ignores the header. */
  readonly trustProxy: number;
  readonly maxBodyBytes: number;
  readonly maxApiBodyBytes: number;
  readonly maxWsPayload: number;
  readonly wsMaxBuffer: number;
  readonly wsIdleTimeout: number;
  readonly maxRooms: number;
  readonly maxConnections: number;
  /** Client frames per second per connection; 0 = no limit. */
  readonly wsRateLimit: number;
  readonly wsRateBurst: number;
  readonly maxHeaders: number;
  readonly maxHeaderBytes: number;
  readonly apiToken: string | undefined;
  /** Lower-case origins allowed to open /ws; undefined allows any. */
  readonly allowedOrigins: readonly string[] | undefined;
  /** 0 = no limit. */
  readonly retentionMaxRequests: number;
  /** Stored payload bytes kept per webhook; 0 = no limit. */
  readonly retentionMaxBytes: number;
  /** 0 = no limit. */
  readonly maxWebhooks: number;
  /** Milliseconds; 0 = forever. */
  readonly retentionMaxAgeMs: number;
  readonly retentionIntervalMs: number;
  readonly retentionBatch: number;
  readonly replayLimit: number;
  /** Payload bytes per REST page and per replay page; a page holds at least one request. */
  readonly maxPageBytes: number;
  /** Payload bytes held at once for every listing and replay (server-wide). */
  readonly maxReadBytes: number;
  /** Body bytes being received at once over every capture connection (server-wide). */
  readonly maxInflightBytes: number;
  readonly batchMaxRows: number;
  readonly batchMaxBytes: number;
  readonly queueMaxBytes: number;
  readonly pgPoolSize: number;
  readonly shutdownTimeoutMs: number;
  readonly settleTimeoutMs: number;
  readonly benchNoop: boolean;
  readonly searchScanRows: number;
  /** Lower-case origins resend may send to; undefined: resend is off. */
  readonly resendAllow: readonly string[] | undefined;
  readonly resendTimeoutMs: number;
  /** Internal: listen with SO_REUSEPORT, for workers of one service; off, a busy port is refused. */
  readonly sharePort: boolean;
  /** Worker processes on one port (src/cluster.ts); 1 runs one process without a primary. */
  readonly workers: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment once; throws a ConfigError listing every problem at once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const result = v.safeParse(EnvSchema, env, { abortPipeEarly: true });
  if (!result.success) {
    throw new ConfigError(
      result.issues.map((issue) => {
        const key = v.getDotPath(issue) ?? '(environment)';
        return `${key}=${JSON.stringify(env[key] ?? '')}: ${issue.message}`;
      }),
    );
  }
  const e = result.output;
  // A client rejoining every room after a reconnect sends one join per room at once. The bucket
  // takes a burst; more than a burst refused within the strike window closes it (1008).
  if (e.HOOKY_WS_RATE_LIMIT > 0 && e.HOOKY_MAX_ROOMS > 2 * e.HOOKY_WS_RATE_BURST) {
    throw new ConfigError([
      `HOOKY_WS_RATE_BURST=${e.HOOKY_WS_RATE_BURST}: must be at least half of HOOKY_MAX_ROOMS (${e.HOOKY_MAX_ROOMS}), or a client rejoining its rooms after a reconnect is closed for its rate`,
    ]);
  }
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    dataDir: e.HOOKY_DATA_DIR,
    publicUrl: e.HOOKY_PUBLIC_URL,
    logLevel: e.HOOKY_LOG_LEVEL,
    trustProxy: e.HOOKY_TRUST_PROXY,
    maxBodyBytes: e.HOOKY_MAX_BODY_BYTES,
    maxApiBodyBytes: e.HOOKY_MAX_API_BODY_BYTES,
    maxWsPayload: e.HOOKY_MAX_WS_PAYLOAD,
    wsMaxBuffer: e.HOOKY_WS_MAX_BUFFER || 2 * e.HOOKY_MAX_BODY_BYTES + MiB,
    wsIdleTimeout: e.HOOKY_WS_IDLE_TIMEOUT,
    maxRooms: e.HOOKY_MAX_ROOMS,
    maxConnections: e.HOOKY_MAX_CONNECTIONS,
    wsRateLimit: e.HOOKY_WS_RATE_LIMIT,
    wsRateBurst: e.HOOKY_WS_RATE_BURST,
    maxHeaders: e.HOOKY_MAX_HEADERS,
    maxHeaderBytes: e.HOOKY_MAX_HEADER_BYTES,
    apiToken: e.HOOKY_API_TOKEN,
    allowedOrigins: e.HOOKY_ALLOWED_ORIGINS && Object.freeze(e.HOOKY_ALLOWED_ORIGINS),
    retentionMaxRequests: e.HOOKY_RETENTION_MAX_REQUESTS,
    retentionMaxBytes: e.HOOKY_RETENTION_MAX_BYTES,
    maxWebhooks: e.HOOKY_MAX_WEBHOOKS,
    retentionMaxAgeMs: e.HOOKY_RETENTION_MAX_AGE_HOURS * 3600_000,
    retentionIntervalMs: e.HOOKY_RETENTION_INTERVAL_MS,
    retentionBatch: e.HOOKY_RETENTION_BATCH,
    replayLimit: e.HOOKY_REPLAY_LIMIT,
    maxPageBytes: e.HOOKY_MAX_PAGE_BYTES,
    maxReadBytes: e.HOOKY_MAX_READ_BYTES,
    maxInflightBytes: e.HOOKY_MAX_INFLIGHT_BYTES,
    batchMaxRows: e.HOOKY_BATCH_MAX_ROWS,
    batchMaxBytes: e.HOOKY_BATCH_MAX_BYTES,
    queueMaxBytes: e.HOOKY_QUEUE_MAX_BYTES,
    pgPoolSize: e.HOOKY_PG_POOL_SIZE,
    shutdownTimeoutMs: e.HOOKY_SHUTDOWN_TIMEOUT_MS,
    settleTimeoutMs: e.HOOKY_SETTLE_TIMEOUT_MS,
    benchNoop: e.HOOKY_BENCH_NOOP,
    searchScanRows: e.HOOKY_SEARCH_SCAN_ROWS,
    resendAllow: e.HOOKY_RESEND_ALLOW && Object.freeze(e.HOOKY_RESEND_ALLOW),
    resendTimeoutMs: e.HOOKY_RESEND_TIMEOUT_MS,
    sharePort: e.HOOKY_SHARE_PORT,
    workers: e.HOOKY_WORKERS,
  });
}
