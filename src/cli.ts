#!/usr/bin/env node
/**
 * The `hooky` command: `serve`, `create`, `listen`. Built to dist/src/cli.js (package.json `bin`);
 * from the sources: `node --import tsx src/cli.ts`.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createClient, type CapturedRequest } from './client/index.js';
import { isPermanentRefusal, requestIdFloor, requestIdPattern, tokenPattern, webhookIdPattern } from './protocol.js';

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
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs explains unknown options and missing values well; keep its words.
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (parsed.values.help) {
    process.stdout.write(help[name as keyof typeof commands]);
    return 0;
  }
  return command.run({ ...(parsed.values as Omit<Args, 'positionals'>), positionals: parsed.positionals });
}

async function serve({ positionals, workers }: Args): Promise<number> {
  if (positionals.length > 0) throw new UsageError('serve takes no arguments; configure it with environment variables');
  // Checked with the rest of the configuration, as HOOKY_WORKERS (config.ts).
  if (workers !== undefined) process.env.HOOKY_WORKERS = workers;
  // main.ts starts the server and owns the process from here: its signal handlers end it.
  await import('./main.js');
  return new Promise<number>(() => undefined);
}

async function create({ url, token: flag, id, positionals }: Args): Promise<number> {
  if (positionals.length > 0) throw new UsageError(`create takes no arguments (got "${positionals[0]}"); use --id ID`);
  if (id !== undefined && !webhookIdPattern.test(id)) throw new UsageError('--id must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$');
  const base = httpBase(url);
  const token = apiToken(flag);
  const endpoint = new URL('api/webhooks', base);
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(id === undefined ? {} : { id }),
  }).catch((err: unknown) => {
    throw new CliError(`cannot reach ${base.origin}: ${reason(err)}`);
  });
  const text = await res.text();
  if (res.status === 401) throw new CliError(unauthorized(base, token));
  const body = parseJson(text) as { url?: unknown; error?: unknown; message?: unknown } | undefined;
  if (res.status !== 201 || typeof body?.url !== 'string') {
    const detail = typeof body?.message === 'string' ? body.message : text.slice(0, 200);
    throw new CliError(`could not create the webhook: HTTP ${res.status}${typeof body?.error === 'string' ? ` ${body.error}` : ''}: ${detail}`);
  }
  process.stdout.write(`${body.url}\n`);
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
  const client = createClient(server.href, token === undefined ? {} : { token });
  const say = (line: string): void => void process.stderr.write(`hooky: ${line}\n`);
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  // Marks every request this run forwards (see forwardedBy): one that comes back is a loop.
  const runId = randomBytes(8).toString('hex');

  return new Promise<number>((resolve) => {
    let exiting = false;
    const exit = (status: number, message?: string) => {
      if (exiting) return;
      exiting = true;
      if (message) say(message);
      void client.close().then(() => resolve(status));
    };
    let connectedOnce = false;
    let joinedOnce = false;
    // Where a new run goes on from: the last request handled, else the --since given, else the
    // newest request when the join took effect (so that a run stopped before any request
    // arrived still resumes without a gap).
    let last = since;
    // Forwarded one at a time, in capture order: a receiver may depend on the order of events.
    let forwarding = Promise.resolve();

    client.on('connected', () => {
      connectedOnce = true;
      say(`connected to ${server.origin}`);
    });
    client.on('joined', ({ last: newest }) => {
      say(joinedOnce ? `rejoined ${webhookId}` : `listening for requests to ${webhookId}${target ? `, forwarding to ${target.href}` : ''} (Ctrl-C to stop)`);
      if (!joinedOnce && last === undefined) last = newest ?? requestIdFloor(0);
      joinedOnce = true;
    });
    client.on('disconnect', ({ reason }) => say(`disconnected: ${reason}`));
    client.on('reconnecting', ({ attempt, delay }) => say(`reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})`));
    client.on('connect_error', (err) => {
      if (err.status === 401) exit(1, unauthorized(server, token));
      else if (err.status !== undefined && isPermanentRefusal(err.status)) exit(1, `${server.origin} refused the connection: ${err.message}`);
      // A first attempt that fails is most often a wrong --url: say so at once rather than
      // retrying forever. Once connected, a failure is an outage, retried with backoff.
      else if (!connectedOnce && !wait) exit(1, `cannot connect to ${server.origin}: ${err.message} (check --url; pass --wait to keep retrying until it is up)`);
      else say(`cannot connect: ${err.message}`);
    });
    client.on('error', (err) => {
      if (err.code === 'WEBHOOK_DELETED') exit(1, `webhook ${webhookId} was deleted`);
      // REFUSED follows a connect_error, which has already ended the command.
      else if (err.code !== 'WEBHOOK_NOT_FOUND' && err.code !== 'REFUSED') say(`server error ${err.code}: ${err.message}`);
    });
    client.on('new-request', (req) => {
      if (exiting) return;
      out(json ? JSON.stringify(req) : summary(req));
      if (!target) return void (last = req.id);
      if (forwardedBy(req).includes(runId)) {
        return exit(
          1,
          `forwarding loop: request ${req.id} is one this command forwarded to ${target.href}, captured again by ${webhookId}; stopped forwarding. Point --forward at the server that should receive the requests, not at a hooky capture URL that leads back here`,
        );
      }
      // With --forward, the resume point moves once the forward has been tried, so that one still
      // in flight at Ctrl-C is sent again by the resumed run.
      forwarding = forwarding
        .then(() =>
          exiting
            ? undefined
            : forwardRequest(req, target, runId).then(
                ({ status, statusText, url, ms }) => (json ? say : out)(`→ ${status} ${statusText} ${req.method} ${url} (${ms} ms)`),
                (err: unknown) => say(`forwarding ${req.id} to ${target.origin} failed: ${reason(err)}`),
              ),
        )
        .then(() => void (exiting || (last = req.id)));
    });

    client.join(webhookId, since === undefined ? {} : { since }).catch((err: { code?: string; message?: string }) => {
      exit(1, err.code === 'WEBHOOK_NOT_FOUND' ? `webhook ${webhookId} not found on ${server.origin}` : `cannot listen: ${err.message}`);
    });
    // The resume point lives in memory only; say how to go on from where this run left off.
    const stop = () => exit(0, last === undefined ? undefined : `stopped; to go on from here: ${resumeCommand(args, webhookId, last)}`);
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, stop);
  });
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

/** The loopback names a URL can give this machine by. */
const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || host === '0.0.0.0' || host === '[::]' || /^127\.\d+\.\d+\.\d+$/.test(host);

/**
 * Whether `target` is the capture URL of `webhookId` on `server` (or a sub-path of it): a
 * forward there captures each request again, a loop. Only the obvious spelling of it; a loop
 * through another name, a proxy or a second `listen` is caught by the marker (forwardedBy).
 */
function isCaptureUrlOf(target: URL, server: URL, webhookId: string): boolean {
  const port = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80');
  const sameHost = target.hostname === server.hostname || (isLoopback(target.hostname) && isLoopback(server.hostname));
  if (!sameHost || port(target) !== port(server)) return false;
  const capture = new URL(`h/${webhookId}`, server).pathname;
  return target.pathname === capture || target.pathname.startsWith(`${capture}/`);
}

/**
 * The header `listen --forward` adds to each request it forwards: the ids of the runs that have
 * forwarded it, comma-separated, each appending its own. A run that captures a request bearing
 * its own id has forwarded it back to itself, maybe through other hooky servers or listeners.
 */
const forwardHeader = 'x-hooky-forwarded-by';

const forwardedBy = (req: CapturedRequest): string[] =>
  (req.headers[forwardHeader] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

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

/** What to do about a 401, from the REST API or the WebSocket upgrade. */
const unauthorized = (server: URL, token: string | undefined) =>
  token === undefined
    ? `${server.origin} requires an API token: pass --token or set HOOKY_API_TOKEN`
    : `${server.origin} did not accept the API token (HTTP 401): check --token or HOOKY_API_TOKEN`;

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

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) describe the connection to hooky, not the request, and
 * host and content-length are set anew for the target. `expect` goes too: the body is already
 * complete, there is nothing to wait for.
 */
const dropped = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length', 'expect']);

/**
 * Replays a captured request to `target`: same method, sub-path appended to the target's path,
 * query, headers less the hop-by-hop ones, and the body byte for byte (decoded from base64 when
 * it was not UTF-8), so that signatures over the body (Stripe, GitHub) still verify. node:http
 * rather than fetch: fetch adds and forbids headers of its own.
 */
function forwardRequest(req: CapturedRequest, target: URL, runId: string): Promise<{ status: number; statusText: string; url: string; ms: number }> {
  const started = Date.now();
  // Also hop-by-hop: the headers the Connection header names (RFC 9110 §7.6.1).
  const named = new Set((req.headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (!dropped.has(name) && !named.has(name) && !name.startsWith('proxy-')) headers[name] = value;
  }
  headers[forwardHeader] = [...forwardedBy(req), runId].join(', ');
  const body = req.body === null ? undefined : Buffer.from(req.body, req.bodyEncoding === 'base64' ? 'base64' : 'utf8');
  if (body !== undefined || 'content-length' in req.headers) headers['content-length'] = String(body?.length ?? 0);

  // The target's own query, then the captured one byte for byte (a sender may have signed the
  // URL, as Twilio does).
  const queries = [target.search.slice(1), rawQueryOf(req)].filter((q) => q !== '');
  const search = queries.length > 0 ? `?${queries.join('&')}` : '';
  // The captured path is kept as it arrived, percent-encoding and all.
  const path = `${target.pathname.replace(/\/+$/, '')}${req.path === '/' ? '' : req.path}` || '/';
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;

  return new Promise((resolve, reject) => {
    const out = send(
      { protocol: target.protocol, hostname: target.hostname, port: target.port, method: req.method, path: path + search, headers, timeout: 30_000 },
      (res: IncomingMessage) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', url: `${target.origin}${path}${search}`, ms: Date.now() - started }),
        );
        res.on('error', reject);
      },
    );
    out.on('timeout', () => out.destroy(new Error('no answer within 30 s')));
    out.on('error', reject);
    out.end(body);
  });
}

/** The query as received; rebuilt from queryParams for a request captured before rawQuery was kept. */
function rawQueryOf(req: CapturedRequest): string {
  if (req.rawQuery !== undefined) return req.rawQuery;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(req.queryParams)) for (const v of Array.isArray(value) ? value : [value]) query.append(name, v);
  return query.toString();
}

/** `14:03:07.123  POST /orders/42?x=1  1.2 KiB  application/json` */
function summary(req: CapturedRequest): string {
  const t = new Date(req.timestamp);
  const time = `${t.toTimeString().slice(0, 8)}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  const search = rawQueryOf(req);
  const path = req.path + (search !== '' ? `?${search}` : '');
  return `${time}  ${req.method.padEnd(6)} ${path}  ${size(req.size)}  ${req.headers['content-type'] ?? '-'}`;
}

const size = (n: number) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);

function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch hides the socket error in `cause`.
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  return cause?.message || err.message || code || 'unknown error';
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

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // An answer that is not JSON (a proxy's error page) is shown as text by the caller.
    return undefined;
  }
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
