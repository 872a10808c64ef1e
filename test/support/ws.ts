import WebSocket from 'ws';

export interface Frame {
  event: string;
  data: any;
  ref?: string | number;
}

/**
 * A raw hooky.v1 client for tests: every frame is queued, and `next` waits for the next one
 * matching an event name (frames it skips stay queued for later calls).
 */
export interface TestClient {
  ws: WebSocket;
  frames: Frame[];
  next(event: string, timeoutMs?: number): Promise<Frame>;
  /** Resolves with [] or the frames of `event` that arrive within `ms`. */
  collect(event: string, ms: number): Promise<Frame[]>;
  send(frame: unknown): void;
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

export function openClient(url: string, protocols: string | string[] = 'hooky.v1', options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, options);
    const queue: Frame[] = [];
    const frames: Frame[] = [];
    let waiters: { event: string; resolve: (f: Frame) => void }[] = [];
    const closed = new Promise<{ code: number; reason: string }>((res) =>
      ws.on('close', (code, reason) => res({ code, reason: reason.toString() })),
    );
    ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as Frame;
      frames.push(frame);
      const i = waiters.findIndex((w) => w.event === frame.event);
      if (i >= 0) {
        const [w] = waiters.splice(i, 1);
        w!.resolve(frame);
      } else queue.push(frame);
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body, headers: res.headers })));
    });
    ws.on('error', reject);
    ws.on('open', () => {
      const client: TestClient = {
        ws,
        frames,
        next(event, timeoutMs = 5000) {
          const i = queue.findIndex((f) => f.event === event);
          if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]!);
          return new Promise((res, rej) => {
            const w = { event, resolve: (f: Frame) => (clearTimeout(t), res(f)) };
            const t = setTimeout(() => {
              waiters = waiters.filter((x) => x !== w);
              rej(new Error(`no "${event}" frame within ${timeoutMs} ms; got ${JSON.stringify(frames.map((f) => f.event))}`));
            }, timeoutMs);
            waiters.push(w);
          });
        },
        async collect(event, ms) {
          await new Promise((r) => setTimeout(r, ms));
          const out = queue.filter((f) => f.event === event);
          for (const f of out) queue.splice(queue.indexOf(f), 1);
          return out;
        },
        send(frame) {
          ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
        },
        closed,
        async close() {
          if (ws.readyState === WebSocket.CLOSED) return;
          ws.close();
          await closed;
        },
      };
      resolve(client);
    });
  });
}

export async function joined(url: string, webhookId: string): Promise<TestClient> {
  const c = await openClient(url);
  await c.next('connected');
  c.send({ event: 'join', data: { webhookId } });
  await c.next('joined');
  return c;
}
