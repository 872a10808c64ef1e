/**
 * The memory attacks of issue 9, parameterised so that test/memory.test.ts runs them small and
 * bench/memory.ts runs them at the size: many large captures read back through REST
 * listings or `join` replays, and many connections each holding a large body in flight. A
 * watcher samples the server's RSS and how long `/healthz` takes while an attack runs.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { rssMiB } from './observe.js';

/** Polls `/healthz` (one connection each) and samples RSS until stopped. */
export function watch(base: string, pid: number, { everyMs = 200, healthTimeoutMs = 5000 } = {}) {
  let peak = rssMiB(pid);
  let slowest = 0;
  let missed = 0;
  let polls = 0;
  let stopped = false;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      clearInterval(sampler); // the process died: the peak so far stands
    }
  }, 50);
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now();
      const ok = await healthz(base, healthTimeoutMs);
      const ms = performance.now() - t0;
      polls++;
      slowest = Math.max(slowest, ms);
      if (!ok) missed++;
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - ms)));
    }
  })();
  return {
    async stop() {
      stopped = true;
      clearInterval(sampler);
      await loop;
      return { peakRssMiB: +peak.toFixed(1), slowestHealthzMs: Math.round(slowest), healthzMissed: missed, healthzPolls: polls };
    },
  };
}

function healthz(base: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${base}/healthz`, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** POSTs `count` bodies of `bytes` random bytes (stored base64, so each payload is ~4/3 of it), `concurrency` at a time. */
export async function seedCaptures(base: string, webhookId: string, count: number, bytes: number, concurrency = 3): Promise<void> {
  const body = randomBytes(bytes);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        const status = await post(`${base}/h/${webhookId}`, body);
        if (status !== 200) throw new Error(`seeding capture answered ${status}`);
      }
    }),
  );
}

function post(url: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `n` concurrent `GET …/requests?limit=` whose answers are read and dropped; the statuses, in order. */
export async function listings(base: string, webhookId: string, n: number, limit = 1000): Promise<{ status: number; bytes: number; retryAfter?: string }[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<{ status: number; bytes: number; retryAfter?: string }>((resolve) => {
          const req = request(`${base}/api/webhooks/${webhookId}/requests?limit=${limit}`, { agent: false }, (res) => {
            let bytes = 0;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => resolve({ status: res.statusCode!, bytes, ...(res.headers['retry-after'] ? { retryAfter: res.headers['retry-after'] } : {}) }));
            res.on('error', () => resolve({ status: -1, bytes }));
          });
          req.on('error', () => resolve({ status: -1, bytes: 0 }));
          req.end();
        }),
    ),
  );
}

/**
 * One socket sending `joins` joins with `since` from the start at once, then reading every frame.
 * Frames are not parsed (a 14 MB payload would cost the attacker more than the server); only
 * their event name is read. Resolves when every join has ended (`replayed` or `error`), or the
 * socket closed.
 */
export function replays(wsUrl: string, webhookId: string, joins: number, timeoutMs = 120_000) {
  return new Promise<{ replayed: number; errors: string[]; events: number; bytes: number; closed: boolean }>((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'hooky.v1', { maxPayload: 256 * 1024 * 1024 });
    const out = { replayed: 0, errors: [] as string[], events: 0, bytes: 0, closed: false };
    const timer = setTimeout(() => finish(), timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      ws.terminate();
      resolve(out);
    };
    ws.on('error', (err) => (out.events === 0 ? reject(err) : finish()));
    ws.on('close', () => {
      out.closed = true;
      finish();
    });
    ws.on('open', () => {
      for (let i = 1; i <= joins; i++) {
        ws.send(JSON.stringify({ event: 'join', data: { webhookId, since: '00000000-0000-7000-8000-000000000000' }, ref: i }));
      }
    });
    ws.on('message', (raw: Buffer) => {
      out.bytes += raw.length;
      const head = raw.subarray(0, 40).toString('latin1');
      if (head.startsWith('{"event":"new-request"')) out.events++;
      else if (head.startsWith('{"event":"replayed"')) out.replayed++;
      else if (head.startsWith('{"event":"error"')) out.errors.push(JSON.parse(raw.toString()).data.code);
      if (out.replayed + out.errors.length >= joins) finish();
    });
  });
}

/**
 * `n` raw connections, each declaring `declared` bytes of body and sending `sent` of them, then
 * holding. Resolves once every connection has sent its bytes or been answered; `release()`
 * closes them all.
 */
export async function bodiesInFlight(port: number, webhookId: string, n: number, declared: number, sent: number) {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const answered: number[] = [];
  const sockets: Socket[] = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const s = connect(port, '127.0.0.1');
          sockets.push(s);
          let settled = false;
          const done = () => {
            if (!settled) (settled = true), resolve();
          };
          let head = '';
          s.on('data', (d: Buffer) => {
            head += d.toString('latin1');
            const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
            if (m && head.includes('\r\n\r\n')) {
              answered.push(Number(m[1]));
              done();
            }
          });
          s.on('error', done);
          s.on('close', done);
          s.on('connect', async () => {
            s.write(`POST /h/${webhookId} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`);
            let left = sent;
            while (left > 0 && !s.destroyed && !settled) {
              const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
              left -= part.length;
              if (!s.write(part)) await new Promise((r) => s.once('drain', r).once('close', r));
            }
            done();
          });
        }),
    ),
  );
  return {
    answered,
    open: () => sockets.filter((s) => !s.destroyed).length,
    release() {
      for (const s of sockets) s.destroy();
    },
  };
}
