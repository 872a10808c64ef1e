/** Running the `hooky` command from the sources in tests, and a receiving end for --forward. */
import { spawn } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import * as assert from 'uvu/assert';
import { http } from './http.js';
import { uniqueId } from './server.js';

const root = new URL('../..', import.meta.url).pathname;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(check: () => boolean, what: () => string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await sleep(10);
  }
}

/** `hooky …` from the sources, as `node --import tsx src/cli.ts …`; HOOKY_URL and HOOKY_API_TOKEN unset unless given. */
export function hooky(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: root,
    env: { ...process.env, HOOKY_URL: '', HOOKY_API_TOKEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d));
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal === null ? -1 : 128))));
  return {
    out,
    exited,
    waitFor: (stream: 'stdout' | 'stderr', pattern: RegExp, ms = 8000) =>
      until(() => pattern.test(out[stream]), () => `${pattern} on ${stream}; stdout: ${out.stdout}\nstderr: ${out.stderr}`, ms),
    stop(): Promise<number> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** The promise's value, or a failure once `ms` have passed: a command that should stop but runs on fails the test. */
export const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`${what}: still running after ${ms} ms`)))]);

/** Runs a command to its end. */
export async function run(args: string[], env: Record<string, string> = {}) {
  const p = hooky(args, env);
  const code = await p.exited;
  return { code, ...p.out };
}

export async function newWebhook(base: string, token?: string): Promise<string> {
  const id = uniqueId('cli');
  const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
  assert.is((await http('POST', `${base}/api/webhooks`, JSON.stringify({ id }), headers)).status, 201);
  return id;
}

export const token = 'cli-test-token-0123456789abcdef';

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  verified: boolean;
}

const secret = 'whsec_test';
export const sign = (body: Buffer) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** The receiving end: records each request and checks its signature as GitHub's receivers do. */
export async function receiver() {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const claimed = Buffer.from(String(req.headers['x-hub-signature-256'] ?? ''));
      const expected = Buffer.from(sign(body));
      const verified = claimed.length === expected.length && timingSafeEqual(claimed, expected);
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body, verified });
      res.writeHead(verified ? 202 : 401).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { port, received, close: () => new Promise((r) => server.close(r)) };
}
