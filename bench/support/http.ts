import { Agent, request } from 'node:http';

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One HTTP request over `agent`; never rejects for an HTTP status, only for a network error. */
export function call(agent: Agent, url: string, method: string, body?: string, timeoutMs = 30_000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, timeout: timeoutMs, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

export const keepAlive = (maxSockets = 64) => new Agent({ keepAlive: true, maxSockets });

/** Creates webhooks with the given ids through the REST API, `concurrency` at a time. */
export async function createWebhooks(base: string, ids: string[], concurrency = 20): Promise<void> {
  const agent = keepAlive(concurrency);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      const r = await call(agent, `${base}/api/webhooks`, 'POST', JSON.stringify({ id }));
      if (r.status !== 201 && r.status !== 409) throw new Error(`create webhook ${id}: ${r.status} ${r.body}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
}

export async function scrape(base: string): Promise<string> {
  const agent = keepAlive(1);
  const r = await call(agent, `${base}/metrics`, 'GET');
  agent.destroy();
  return r.body;
}

/** A 1 KB-ish JSON body: `size` bytes exactly. */
export function jsonBody(size: number, fields: Record<string, unknown> = {}): string {
  const head = JSON.stringify({ ...fields, pad: '' });
  return `${head.slice(0, -2)}${'x'.repeat(Math.max(0, size - head.length))}"}`;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
