import { Agent, request } from 'node:http';

export interface Outcome {
  /** When the answer (or the error) arrived, ms since the epoch. */
  at: number;
  /** HTTP status, or the error code when the connection failed or closed. */
  status: number | string;
  /** The `error` code of a JSON error body. */
  error?: string;
  retryAfter?: string;
  /** The request id of a 200. */
  id?: string;
}

/**
 * `concurrency` senders capturing to one webhook in a loop until stopped, each waiting for its
 * answer before sending again. Like a sender honouring Retry-After (briefly), they pause a
 * little after a 503 or a failed connection rather than spinning.
 */
export function startSenders(base: string, webhookId: string, { concurrency = 20, body = '{"n":1}' } = {}) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const outcomes: Outcome[] = [];
  let stopping = false;
  const once = () =>
    new Promise<Outcome>((resolve) => {
      const req = request(`${base}/h/${webhookId}`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('error', (e: NodeJS.ErrnoException) => resolve({ at: Date.now(), status: e.code ?? e.message }));
        res.on('end', () => {
          const status = res.statusCode!;
          const json = JSON.parse(text) as { id?: string; error?: string };
          const o: Outcome = { at: Date.now(), status };
          if (status === 200) o.id = json.id!;
          if (json.error !== undefined) o.error = json.error;
          if (res.headers['retry-after'] !== undefined) o.retryAfter = res.headers['retry-after'];
          resolve(o);
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => resolve({ at: Date.now(), status: e.code ?? e.message }));
      req.end(body);
    });
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stopping) {
      const o = await once();
      outcomes.push(o);
      if (o.status !== 200) await new Promise((r) => setTimeout(r, 10));
    }
  });
  return {
    outcomes,
    acked: () => outcomes.filter((o) => o.status === 200).map((o) => o.id!),
    /** Outcomes that arrived within [from, to). */
    between: (from: number, to: number) => outcomes.filter((o) => o.at >= from && o.at < to),
    async stop() {
      stopping = true;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}
