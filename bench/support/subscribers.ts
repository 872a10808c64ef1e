import { fork, type ChildProcess } from 'node:child_process';
import { root } from './proc.js';

export type ToChild =
  | { cmd: 'open'; url: string; webhookIds: string[]; localAddress: string | undefined; concurrency: number; timeoutMs: number; maxSeq: number }
  | { cmd: 'reset' }
  | { cmd: 'report' }
  | { cmd: 'close' };

export interface SubReport {
  webhookId: string;
  open: boolean;
  received: number;
  unique: number;
  wrongRoom: number;
  duplicates: number;
}

export type FromChild =
  | { type: 'ready' }
  | { type: 'opened'; ok: number; failed: number; errors: string[]; ms: number }
  | { type: 'report'; subs: SubReport[]; latencies: Float64Array };

export interface OpenResult {
  ok: number;
  failed: number;
  errors: string[];
  ms: number;
}

export interface Subscribers {
  /** Opens and joins every subscriber; resolves when all have answered `joined` or failed. */
  open(url: string): Promise<OpenResult>;
  reset(): void;
  report(): Promise<{ subs: SubReport[]; latencies: Float64Array }>;
  close(): Promise<void>;
}

export interface SubscriberPlan {
  /** One entry per subscriber: the webhook whose room it joins. */
  webhookIds: string[];
  processes: number;
  /** Loopback source addresses to spread the sockets over (127.0.0.0/8 only). */
  localAddresses?: string[];
  /** Handshakes in flight per process. */
  concurrency?: number;
  /** Highest sequence number a sender will use (for the per-subscriber missed count). */
  maxSeq?: number;
}

/** Forks `plan.processes` subscriber processes and shares the subscribers out between them. */
export async function startSubscribers(plan: SubscriberPlan): Promise<Subscribers> {
  const children: ChildProcess[] = [];
  const shares: string[][] = Array.from({ length: plan.processes }, () => []);
  plan.webhookIds.forEach((id, i) => shares[i % plan.processes]!.push(id));
  await Promise.all(
    shares.map(
      () =>
        new Promise<void>((resolve, reject) => {
          const child = fork(new URL('./subscriber-process.ts', import.meta.url).pathname, [], {
            cwd: root,
            execArgv: ['--import', 'tsx'],
            serialization: 'advanced',
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          });
          children.push(child);
          child.once('message', (m: FromChild) => (m.type === 'ready' ? resolve() : reject(new Error('subscriber process did not start'))));
          child.once('error', reject);
        }),
    ),
  );
  const ask = <T extends FromChild['type']>(child: ChildProcess, msg: ToChild, type: T) =>
    new Promise<Extract<FromChild, { type: T }>>((resolve) => {
      const on = (m: FromChild) => {
        if (m.type !== type) return;
        child.off('message', on);
        resolve(m as Extract<FromChild, { type: T }>);
      };
      child.on('message', on);
      child.send(msg);
    });

  return {
    async open(url) {
      const results = await Promise.all(
        children.map((c, i) =>
          ask(
            c,
            {
              cmd: 'open',
              url,
              webhookIds: shares[i]!,
              localAddress: plan.localAddresses?.[i % plan.localAddresses.length],
              concurrency: plan.concurrency ?? 50,
              timeoutMs: 30_000,
              maxSeq: plan.maxSeq ?? 1,
            },
            'opened',
          ),
        ),
      );
      return {
        ok: results.reduce((a, r) => a + r.ok, 0),
        failed: results.reduce((a, r) => a + r.failed, 0),
        errors: results.flatMap((r) => r.errors).slice(0, 5),
        ms: Math.max(...results.map((r) => r.ms)),
      };
    },
    reset() {
      for (const c of children) c.send({ cmd: 'reset' } satisfies ToChild);
    },
    async report() {
      const parts = await Promise.all(children.map((c) => ask(c, { cmd: 'report' }, 'report')));
      const n = parts.reduce((a, p) => a + p.latencies.length, 0);
      const latencies = new Float64Array(n);
      let at = 0;
      for (const p of parts) {
        latencies.set(p.latencies, at);
        at += p.latencies.length;
      }
      return { subs: parts.flatMap((p) => p.subs), latencies };
    },
    async close() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null) return resolve();
              const kill = setTimeout(() => c.kill('SIGKILL'), 10_000);
              c.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              c.send({ cmd: 'close' } satisfies ToChild);
            }),
        ),
      );
    },
  };
}
