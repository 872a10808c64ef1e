import { pino, stdSerializers, type DestinationStream } from 'pino';

const levels = ['debug', 'info', 'warn', 'error', 'silent'] as const;

export type LogLevel = (typeof levels)[number];
type Fields = Record<string, unknown>;
export type Logger = Record<Exclude<LogLevel, 'silent'>, (message: string, fields?: Fields) => void>;

/**
 * JSON lines on stderr through pino: `{"level":"info","time":"…","msg":"…", …fields}`. The level
 * is written by name and the time as ISO 8601 so a line reads without pino-pretty. Writes are
 * synchronous: hooky logs rarely and off the hot path, and a line written just before
 * `process.exit` (a failed start-up) must not be lost.
 */
export function createLogger(level: LogLevel, destination: DestinationStream = pino.destination({ dest: 2, sync: true })): Logger {
  const logger = pino(
    {
      level,
      base: null, // no pid or hostname on every line: one process, one stream
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Error objects stringify to {} by default; `err` keeps name, message, code and stack.
      serializers: { err: stdSerializers.err },
    },
    destination,
  );
  const at = (name: Exclude<LogLevel, 'silent'>) => (message: string, fields?: Fields) => logger[name](fields ?? {}, message);
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
