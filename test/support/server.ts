import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createServer, type Server } from '../../src/server.js';
import { testDatabaseUrl } from './db.js';

export interface TestServer {
  server: Server;
  url: string;
  wsUrl: string;
  close(): Promise<void>;
}

/** A hooky server on port 0 against the test database; extra env overrides the defaults. */
export async function startServer(env: Record<string, string> = {}): Promise<TestServer> {
  const config = loadConfig({
    DATABASE_URL: await testDatabaseUrl(),
    PORT: '0',
    HOST: '127.0.0.1',
    HOOKY_SHUTDOWN_TIMEOUT_MS: '5000',
    // Off unless a test turns it on: on a shared database it would delete other runs' rows.
    HOOKY_RETENTION_MAX_REQUESTS: '0',
    HOOKY_RETENTION_MAX_AGE_HOURS: '0',
    HOOKY_RETENTION_MAX_BYTES: '0',
    ...env,
  });
  const server = await createServer(config, createLogger(process.env.HOOKY_TEST_LOG === '1' ? 'debug' : 'silent'));
  const url = `http://127.0.0.1:${server.port}`;
  return { server, url, wsUrl: `ws://127.0.0.1:${server.port}/ws`, close: () => server.close() };
}

/** A webhook id no other test (or earlier run on a shared database) uses. */
export const uniqueId = (prefix = 't') => `${prefix}-${randomBytes(6).toString('hex')}`;

export async function createWebhook(base: string, body: Record<string, unknown> = {}): Promise<{ id: string; url: string }> {
  const res = await fetch(`${base}/api/webhooks`, { method: 'POST', body: JSON.stringify({ id: uniqueId(), ...body }) });
  if (res.status !== 201) throw new Error(`create webhook: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; url: string };
}

interface WithServer {
  s: TestServer;
  /** WebSocket clients a test opened: closed after each test. */
  clients: { close(): Promise<unknown> }[];
}

/** A suite with one server for all its tests (extra env as for startServer), closing each test's clients after it. */
export function withServer(name: string, env: Record<string, string> = {}) {
  const test = suite<WithServer>(name, { clients: [] } as unknown as WithServer);
  test.before(async (ctx) => {
    ctx.s = await startServer(env);
    ctx.clients = [];
  });
  test.after.each(async (ctx) => {
    await Promise.all(ctx.clients.map((c) => c.close()));
    ctx.clients = [];
  });
  test.after(async (ctx) => {
    await ctx.s.close();
  });
  return test;
}
