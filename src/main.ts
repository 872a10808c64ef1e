import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './log.js';
import { createServer } from './server.js';

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
  process.exit(1);
}
const log = createLogger(config.server.logLevel);

const server = await createServer(config, log).catch((err: unknown) => {
  // Start-up failures are about the environment (database, port, binary): the message says
  // what to do; the stack only helps at debug level.
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined;
  log.error(`start-up failed: ${err instanceof Error ? err.message : String(err)}`, cause ? { cause } : undefined);
  log.debug('start-up failure', { err });
  process.exit(1);
});

// The shutdown order is the server's (see server.ts); a second signal skips it.
let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) {
    log.warn(`${signal} again: exiting without finishing the shutdown`);
    process.exit(130);
  }
  stopping = true;
  log.info(`${signal}: shutting down`);
  server.close().then(
    () => {
      log.info('stopped');
      process.exit(0);
    },
    (err: unknown) => {
      log.error('shutdown failed', { err });
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// Logged once the signals are handled: whoever reads the listening line may stop hooky at once.
if (config.auth.apiToken === undefined && !isLoopback(config.server.host)) {
  log.warn(
    `the REST API and /ws need no token and are reachable on ${server.address}: anyone who reaches this port can list, read and delete ` +
      'webhooks and their captures. Set HOOKY_API_TOKEN, or HOST=127.0.0.1 to serve this machine only.',
  );
}
const everywhere = config.server.host === '0.0.0.0' ? 'every IPv4 address of this machine' : config.server.host === '::' ? 'every address of this machine' : undefined;
log.info(`hooky listening on ${server.address}${everywhere ? ` (${everywhere}; from here: ${server.url})` : ''}`, { port: server.port });

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
