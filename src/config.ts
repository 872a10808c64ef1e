import * as v from 'valibot';

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

const optionalText = v.pipe(
  v.optional(v.string(), ''),
  v.trim(),
  v.transform((s) => (s === '' ? undefined : s)),
);

const databaseUrl = v.pipe(
  optionalText,
  v.check((s) => s === undefined || /^postgres(ql)?:\/\//.test(s), 'must start with postgres:// or postgresql://'),
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
  HOOKY_TRUST_PROXY: bool(false), // take sourceIp from X-Forwarded-For
  HOOKY_MAX_BODY_BYTES: int(10 * MiB, 0, 1024 * MiB), // 10 MiB per captured body
  HOOKY_MAX_API_BODY_BYTES: int(1 * MiB, 1 * KiB, 64 * MiB), // 1 MiB per REST request body
  HOOKY_MAX_WS_PAYLOAD: int(64 * KiB, 256, 16 * MiB), // 64 KiB per client frame; larger closes with 1009
  HOOKY_WS_MAX_BUFFER: int(0, 0, 4096 * MiB), // bytes queued for a slow client before it is closed; 0 = 2 × body limit + 1 MiB
  HOOKY_WS_IDLE_TIMEOUT: int(60, 0, 960), // seconds without traffic before a socket is pinged, then dropped
  HOOKY_MAX_ROOMS: int(100, 1, 100_000), // rooms one connection may join
  HOOKY_REPLAY_LIMIT: int(1000, 1, 100_000), // requests replayed by one `join` with `since`
  HOOKY_BATCH_MAX_ROWS: int(1000, 1, 100_000), // rows in one group-commit INSERT
  HOOKY_BATCH_MAX_BYTES: int(16 * MiB, 64 * KiB, 1024 * MiB), // payload bytes in one INSERT
  HOOKY_QUEUE_MAX_BYTES: int(256 * MiB, 1 * MiB, 16384 * MiB), // captures waiting for the writer; past it: 503
  HOOKY_PG_POOL_SIZE: int(10, 2, 200), // connections to PostgreSQL
  HOOKY_SHUTDOWN_TIMEOUT_MS: int(10_000, 0, 600_000), // longest wait for in-flight work on SIGTERM
  HOOKY_BENCH_NOOP: bool(false), // benchmarks only: ANY /bench/noop reads the body and answers 200, storing nothing
});

type Env = v.InferOutput<typeof EnvSchema>;

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly publicUrl: string | undefined;
  readonly logLevel: Env['HOOKY_LOG_LEVEL'];
  readonly trustProxy: boolean;
  readonly maxBodyBytes: number;
  readonly maxApiBodyBytes: number;
  readonly maxWsPayload: number;
  readonly wsMaxBuffer: number;
  readonly wsIdleTimeout: number;
  readonly maxRooms: number;
  readonly replayLimit: number;
  readonly batchMaxRows: number;
  readonly batchMaxBytes: number;
  readonly queueMaxBytes: number;
  readonly pgPoolSize: number;
  readonly shutdownTimeoutMs: number;
  readonly benchNoop: boolean;
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
    replayLimit: e.HOOKY_REPLAY_LIMIT,
    batchMaxRows: e.HOOKY_BATCH_MAX_ROWS,
    batchMaxBytes: e.HOOKY_BATCH_MAX_BYTES,
    queueMaxBytes: e.HOOKY_QUEUE_MAX_BYTES,
    pgPoolSize: e.HOOKY_PG_POOL_SIZE,
    shutdownTimeoutMs: e.HOOKY_SHUTDOWN_TIMEOUT_MS,
    benchNoop: e.HOOKY_BENCH_NOOP,
  });
}
