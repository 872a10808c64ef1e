const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;

export type LogLevel = keyof typeof levels;
type Fields = Record<string, unknown>;
export type Logger = Record<Exclude<LogLevel, 'silent'>, (message: string, fields?: Fields) => void>;

/** One line per event on stderr: time, level, message, then fields as JSON. */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const threshold = levels[level];
  const at = (name: Exclude<LogLevel, 'silent'>) =>
    levels[name] < threshold
      ? () => {}
      : (message: string, fields?: Fields) =>
          write(`${new Date().toISOString()} ${name} ${message}${fields ? ` ${JSON.stringify(fields, errorFields)}` : ''}\n`);
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

// Error objects stringify to {} by default; keep what helps an operator.
function errorFields(_key: string, value: unknown) {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(code === undefined ? {} : { code }), stack: value.stack };
  }
  return value;
}
