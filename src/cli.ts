#!/usr/bin/env node
/**
 * The `hooky` command: its arguments, `--help` and `--version`, and the wiring of `serve`,
 * `create` and `listen` to the modules that do the work (`rest`, `watcher`, `forward`, `format`).
 * Built to dist/src/cli.js (package.json `bin`); from the sources: `node --import tsx src/cli.ts`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isCaptureUrlOf } from './forward.js';
import { listen as listenTo } from './watcher.js';
import { requestIdPattern, tokenPattern, webhookIdPattern } from './protocol.js';
import { createWebhook, parseJson, reason } from './rest.js';

const usage = `Usage: hooky <command> [options]

Commands:
  serve                    run the server, as \`npm start\` does; configured by environment variables
  create [--id ID]         create a webhook and print its capture URL
  listen <webhookId>       print each request captured for the webhook as it arrives

Options:
  --url URL                the hooky server; default $HOOKY_URL or http://localhost:3000
  --token TOKEN            the server's API token, for create and listen; default $HOOKY_API_TOKEN
                           (prefer the variable: other users can see arguments in ps)
  -h, --help               show this help; \`hooky <command> --help\` shows a command's own
  --version                print hooky's version

Exit status: 0 when stopped by a signal, 1 on an error, 2 on a usage error.
`;

const serverOptions = `  --url URL                the hooky server; default $HOOKY_URL or http://localhost:3000
  --token TOKEN            the server's API token; default $HOOKY_API_TOKEN
                           (prefer the variable: other users can see arguments in ps)
  -h, --help               show this help`;

/** Each command's own \`--help\`. */
const help = {
  serve: `Usage: hooky serve

Runs the server in the foreground, as \`npm start\` does, until SIGTERM or Ctrl-C. It takes no
options: it reads its settings from environment variables (PORT, HOST, DATABASE_URL, HOOKY_*;
the README lists every one). Without DATABASE_URL it starts an embedded PostgreSQL in
HOOKY_DATA_DIR (default ./.hooky).

Options:
  --workers N              serve with N processes on one port (HOOKY_WORKERS; default 1)
  -h, --help               show this help
`,
  create: `Usage: hooky create [--id ID] [options]

Creates a webhook and prints its capture URL, e.g. http://localhost:3000/h/stripe-dev.

Options:
  --id ID                  the webhook's id (^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$); default: a random one
${serverOptions}

Exit status: 0 once created, 1 on an error (id taken, server unreachable, token refused), 2 on a usage error.
`,
  listen: `Usage: hooky listen <webhookId> [options]

Prints each request captured for the webhook as it arrives, and keeps listening across
reconnects and server restarts. Ctrl-C stops it and prints the command that goes on from there.

Options:
  --forward URL            send each request on to URL (its sub-path appended) and print the status
  --json                   print each request as one line of JSON instead
  --since REQUEST_ID       first replay the requests captured after that one
  --wait                   keep retrying when the server cannot be reached at start
                           (without it, a first connection that fails exits 1)
${serverOptions}

Exit status: 0 when stopped by a signal, 1 on an error, 2 on a usage error.
`,
} as const;

/** A mistake on the command line: exit status 2, with a pointer to --help. */
class UsageError extends Error {}
/** Anything else that stops the command: exit status 1. */
class CliError extends Error {}

const common = {
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

/** The commands that talk to a server, which may want its API token. */
const remote = { ...common, token: { type: 'string' } } satisfies ParseArgsConfig['options'];

const commands = {
  // serve reads environment variables, and --workers for HOOKY_WORKERS: any other option is a mistake, not ignored.
  serve: { options: { help: common.help, workers: { type: 'string' } }, run: serve },
  create: { options: { ...remote, id: { type: 'string' } }, run: create },
  listen: {
    options: { ...remote, forward: { type: 'string' }, json: { type: 'boolean' }, since: { type: 'string' }, wait: { type: 'boolean' } },
    run: listen,
  },
} as const;

interface Args {
  url?: string;
  token?: string;
  id?: string;
  forward?: string;
  json?: boolean;
  since?: string;
  wait?: boolean;
  workers?: string;
  positionals: string[];
}

/** Resolves with the exit status, or never while `serve` or `listen` run until a signal. */
async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  // `hooky help listen` is `hooky listen --help`.
  if (name === 'help' && rest.length === 1 && Object.hasOwn(help, rest[0]!)) {
    process.stdout.write(help[rest[0] as keyof typeof help]);
    return 0;
  }
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    (name === undefined ? process.stderr : process.stdout).write(usage);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    if (rest.length > 0) throw new UsageError('--version takes no arguments');
    process.stdout.write(`hooky ${version()}\n`);
    return 0;
  }
  if (!Object.hasOwn(commands, name)) throw new UsageError(`unknown command "${name}"`);
  const command = commands[name as keyof typeof commands];
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    // parseArgs explains unknown options and missing values well; keep its words.
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  // parseArgs keeps the last of a repeated option: `--id a --id b` would create b without a word.
  const given = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option') continue;
    if (given.has(token.name)) throw new UsageError(`--${token.name} may be given once`);
    given.add(token.name);
  }
  if (parsed.values.help) {
    process.stdout.write(help[name as keyof typeof commands]);
    return 0;
  }
  return command.run({ ...(parsed.values as Omit<Args, 'positionals'>), positionals: parsed.positionals });
}

async function serve({ positionals, workers }: Args): Promise<number> {
  if (positionals.length > 0) throw new UsageError('serve takes no arguments; configure it with environment variables');
  // HOOKY_WORKERS's rule (config.ts), told as the flag's: a usage error.
  if (workers !== undefined) {
    const { settingProblem } = await import('./config.js');
    const problem = settingProblem('HOOKY_WORKERS', workers);
    if (problem !== undefined) throw new UsageError(`--workers ${problem}`);
    process.env.HOOKY_WORKERS = workers;
  }
  // main.ts starts the server and owns the process from here: its signal handlers end it.
  await import('./main.js');
  return new Promise<number>(() => undefined);
}

async function create({ url, token: flag, id, positionals }: Args): Promise<number> {
  if (positionals.length > 0) throw new UsageError(`create takes no arguments (got "${positionals[0]}"); use --id ID`);
  if (id !== undefined && !webhookIdPattern.test(id)) throw new UsageError('--id must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$');
  const created = await createWebhook(httpBase(url), apiToken(flag), id);
  if ('error' in created) throw new CliError(created.error);
  process.stdout.write(`${created.url}\n`);
  return 0;
}

async function listen(args: Args): Promise<number> {
  const { url, token: flag, forward, json = false, since, wait = false, positionals } = args;
  const [webhookId, extra] = positionals;
  if (webhookId === undefined) throw new UsageError('listen needs a webhook id: hooky listen <webhookId>');
  if (extra !== undefined) throw new UsageError(`listen takes one webhook id (got also "${extra}")`);
  if (!webhookIdPattern.test(webhookId)) throw new UsageError(`"${webhookId}" is not a webhook id`);
  if (since !== undefined && !requestIdPattern.test(since)) throw new UsageError('--since must be a request id (a lower-case UUIDv7)');
  const target = forward === undefined ? undefined : forwardTarget(forward);
  const server = httpBase(url);
  if (target && isCaptureUrlOf(target, server, webhookId)) {
    throw new UsageError(
      `--forward ${target.href} is the capture URL of ${webhookId} itself: every forwarded request would be captured and forwarded again; point --forward at the server that should receive the requests`,
    );
  }
  const token = apiToken(flag);
  return listenTo({ server, webhookId, token, target, json, since, wait, resume: (last) => resumeCommand(args, webhookId, last) });
}

/**
 * The `hooky listen` that goes on from `last` with the options of this run: the same server,
 * forward target and output, all but the token, which never appears in a message.
 */
function resumeCommand({ url, token, forward, json, wait }: Args, webhookId: string, last: string): string {
  const words = ['hooky', 'listen', webhookId, '--since', last];
  if (url !== undefined) words.push('--url', url);
  if (forward !== undefined) words.push('--forward', forward);
  if (json) words.push('--json');
  if (wait) words.push('--wait');
  const command = words.map(shellWord).join(' ');
  return token === undefined ? command : `${command} (and --token again, or HOOKY_API_TOKEN)`;
}

/** A word as a POSIX shell reads it back: bare when safe, else in single quotes. */
const shellWord = (word: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`);

/**
 * `--token`, else $HOOKY_API_TOKEN (empty counts as unset, as for HOOKY_URL), trimmed as the
 * server trims its own. The token never appears in a message: messages end up in logs.
 */
function apiToken(flag: string | undefined): string | undefined {
  const token = (flag ?? process.env.HOOKY_API_TOKEN ?? '').trim();
  if (token === '') {
    if (flag !== undefined) throw new UsageError('--token is empty');
    return undefined;
  }
  if (!tokenPattern.test(token)) {
    throw new UsageError(`${flag === undefined ? 'HOOKY_API_TOKEN' : '--token'} may hold only A-Z a-z 0-9 . _ ~ + -, as the server's HOOKY_API_TOKEN does`);
  }
  return token;
}

/** `--url` or $HOOKY_URL as the server's http(s) base, ending in `/`: the REST API and /ws hang off it. */
function httpBase(url = process.env.HOOKY_URL || 'http://localhost:3000'): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`"${url}" is not a URL; expected something like http://localhost:3000`);
  }
  if (u.protocol === 'ws:' || u.protocol === 'wss:') {
    // A ws URL names the socket itself; the base is the path around it.
    u.protocol = u.protocol === 'ws:' ? 'http:' : 'https:';
    u.pathname = u.pathname.replace(/\/ws\/?$/, '/');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`"${url}" must be an http(s):// or ws(s):// URL`);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

function forwardTarget(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--forward "${url}" is not a URL; expected something like http://localhost:3000/webhooks`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError('--forward must be an http:// or https:// URL');
  return u;
}

/** The version in package.json, one folder above src/cli.ts and two above dist/src/cli.js. */
function version(): string {
  for (const path of ['../package.json', '../../package.json']) {
    let text: string;
    try {
      text = readFileSync(new URL(path, import.meta.url), 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') continue;
      throw err;
    }
    const pkg = parseJson(text) as { name?: unknown; version?: unknown } | undefined;
    if (pkg?.name === 'hooky' && typeof pkg.version === 'string') return pkg.version;
  }
  throw new CliError("cannot find hooky's package.json to read the version from");
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`hooky: ${err.message}\nRun "hooky --help" for usage.\n`);
      process.exit(2);
    }
    process.stderr.write(`hooky: ${err instanceof Error && err instanceof CliError ? err.message : reason(err)}\n`);
    if (!(err instanceof CliError)) process.stderr.write(`${err instanceof Error ? err.stack : ''}\n`);
    process.exit(1);
  },
);
