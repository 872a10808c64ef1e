import type { Bus, BusHandlers } from './bus.js';
import type { Logger } from './log.js';
import { inlineMaxBytes } from './natsbus.js';
import type { CapturedRow } from './store.js';

/**
 * The workers of one `HOOKY_WORKERS` service hand each other their committed batches over the
 * cluster's IPC channel, rows included, through the primary: a worker serving a room gets
 * another worker's batch for it without NOTIFY's commit, its notification and a read from
 * Postgres (`npm run bench -- scale`, docs/scaling.md). Beside the NOTIFY bus, not instead of
 * it: instances on other hosts sharing the database still hear every batch over NOTIFY, and so
 * do the siblings, a second time. The relay publishes a position once, whichever arrives first;
 * and what this path loses (a worker that died between commit and send) reaches the room
 * through NOTIFY or the relay's periodic check, as on any bus. Only the NOTIFY bus gets this:
 * over NATS the workers already hand each other full frames.
 *
 * - A worker says which rooms it serves (`watch`: its first member joined, or its last left).
 * - The primary keeps who serves what, and tells each worker which webhooks another worker
 *   serves (`elsewhere`), so that a worker alone in serving a room sends nothing per batch.
 * - A batch is sent, per webhook, only when another worker serves it, and forwarded by the
 *   primary to those workers only. With a request past `inlineMaxBytes` it goes by reference
 *   (the position alone), and the receiver reads the rows from Postgres.
 */
export type SiblingMessage =
  | { type: 'hooky:watch'; webhookId: string; on: boolean }
  | { type: 'hooky:elsewhere'; webhookId: string; on: boolean }
  | { type: 'hooky:batch'; webhookId: string; position: number; rows?: { id: string; json: string }[] };

/** A worker's IPC channel to the primary, as node:cluster gives it (`process.send`, `process.on('message')`). */
export interface Channel {
  send(message: SiblingMessage): void;
  onMessage(listener: (message: SiblingMessage) => void): () => void;
}

const types: ReadonlySet<unknown> = new Set<SiblingMessage['type']>(['hooky:watch', 'hooky:elsewhere', 'hooky:batch']);
// The channel carries cluster.ts's messages too (listening, metrics).
const isSibling = (m: unknown): m is SiblingMessage => typeof m === 'object' && m !== null && types.has((m as { type?: unknown }).type);

/**
 * Sends over an IPC channel (`process` in a worker, a `Worker` in the primary) unless it is
 * closed. The other end can die between that check and the write: the write then fails (EPIPE),
 * and with no callback Node emits the failure as an `error` event on the channel's owner, which
 * nothing listens for: the primary crashed so when a sibling's batch went to a worker just killed
 * with SIGKILL. The end's death is handled where it is reported (its `exit`, or `disconnect`).
 */
export function sendOver(end: { isConnected(): boolean; send(message: object, callback: (err: Error | null) => void): boolean }, message: object): boolean {
  if (!end.isConnected()) return false;
  end.send(message, ignoreSendError);
  return true;
}

const ignoreSendError = () => {};

/** This worker's end of its channel to the primary, in the shape `sendOver` takes. */
export const primaryEnd = {
  isConnected: () => process.connected && process.send !== undefined,
  send: (message: object, callback: (err: Error | null) => void) => process.send!(message, callback),
};

/** The worker's channel: node:cluster's IPC to the primary. */
export function processChannel(): Channel {
  return {
    // Gone with the primary: the worker is shutting down (cluster.ts), NOTIFY still carries.
    send: (message) => void sendOver(primaryEnd, message),
    onMessage: (listener) => {
      const on = (m: unknown) => isSibling(m) && listener(m);
      process.on('message', on);
      return () => process.off('message', on);
    },
  };
}

/**
 * How long a worker gives a sibling's batch, rows included, to arrive over the channel (0.4 ms
 * at the median, ~1 ms at p99 through the primary on an idle machine) before it reads the rows
 * from Postgres instead. Two waits use it:
 * - NOTIFY's announcement of a position reaches the relay this much later. Announced first, a
 *   batch cost a read (5–14 of 40 sequential captures in the test before this wait, 0 after);
 *   the sibling's batch coming meanwhile, the relay ignores the announcement. Only a position
 *   with no rows behind it waits: another host's batch, or one that went by reference.
 * - A batch held past a gap waits this long for the batch before it (relay.ts `holdGraceMs`;
 *   over NATS too, where rows travel as well): two workers commit one room's batches in turn.
 */
export const handoverGraceMs = 10;

/**
 * The NOTIFY bus that `start` makes, with the batches of the rooms other workers serve handed
 * to them over `channel`; `start` gets the handlers to give that bus.
 */
export async function withSiblings(
  start: (handlers: BusHandlers) => Promise<Bus>,
  channel: Channel,
  handlers: BusHandlers,
  log: Logger,
  graceMs = handoverGraceMs,
): Promise<Bus> {
  // Webhooks another worker serves: only their batches are sent.
  const elsewhere = new Set<string>();
  // Announced positions waiting out `graceMs`, per webhook: the highest one.
  const waiting = new Map<string, number>();
  const stop = channel.onMessage((m) => {
    try {
      if (m.type === 'hooky:elsewhere') {
        if (m.on) elsewhere.add(m.webhookId);
        else elsewhere.delete(m.webhookId);
      } else if (m.type === 'hooky:batch') {
        const rows = m.rows?.map((r) => ({ id: r.id, webhookId: m.webhookId, json: r.json }));
        handlers.committed(m.webhookId, m.position, rows);
      }
    } catch (err) {
      log.error('siblings: handling a message failed', { type: m.type, err });
    }
  });
  let closed = false;
  const announce = (webhookId: string) => {
    const position = waiting.get(webhookId);
    waiting.delete(webhookId);
    if (position !== undefined && !closed) handlers.committed(webhookId, position);
  };
  const bus = await start({
    ...handlers,
    committed(webhookId, position, rows) {
      // A position not known (a settled batch) is looked up at once: nothing else will tell.
      if (position === undefined || rows !== undefined) return handlers.committed(webhookId, position, rows);
      const before = waiting.get(webhookId);
      if (before !== undefined) return void waiting.set(webhookId, Math.max(before, position));
      waiting.set(webhookId, position);
      setTimeout(announce, graceMs, webhookId).unref();
    },
  });

  return {
    committed(reached, rows) {
      // First, so that it is on its way before NOTIFY's: whichever reaches a sibling first is
      // the one it publishes, and NOTIFY's costs a read from Postgres.
      if (elsewhere.size > 0) {
        for (const [webhookId, position] of reached) {
          // A settled batch's positions are not known: NOTIFY says so, and the others look them up.
          if (position === undefined || !elsewhere.has(webhookId)) continue;
          const mine = rows?.filter((r) => r.webhookId === webhookId) ?? [];
          const inline = mine.length > 0 && mine.every((r) => r.json.length <= inlineMaxBytes);
          channel.send({ type: 'hooky:batch', webhookId, position, ...(inline ? { rows: mine.map((r) => ({ id: r.id, json: r.json })) } : {}) });
        }
      }
      bus.committed(reached, rows);
    },
    created: (webhookId) => bus.created(webhookId),
    deleted: (webhookId) => bus.deleted(webhookId),
    watch(webhookId) {
      bus.watch?.(webhookId);
      channel.send({ type: 'hooky:watch', webhookId, on: true });
    },
    unwatch(webhookId) {
      bus.unwatch?.(webhookId);
      channel.send({ type: 'hooky:watch', webhookId, on: false });
    },
    async close() {
      closed = true;
      stop();
      await bus.close();
    },
  };
}

/**
 * The primary's side: who serves what, and the batches forwarded to the workers serving their
 * rooms. `send` reaches one worker by its id; `joined` and `left` follow the workers' lives (a
 * worker that died serves nothing any more).
 */
export function createSiblingRouter(send: (worker: number, message: SiblingMessage) => void) {
  const servers = new Map<string, Set<number>>();
  const workers = new Set<number>();

  /** Tells each worker whose view of `webhookId` changed from `before` (who served it) to now. */
  function changed(webhookId: string, before: ReadonlySet<number>) {
    const now = servers.get(webhookId) ?? new Set<number>();
    const servedBesides = (set: ReadonlySet<number>, w: number) => set.size > (set.has(w) ? 1 : 0);
    for (const w of workers) {
      const was = servedBesides(before, w);
      const is = servedBesides(now, w);
      if (was !== is) send(w, { type: 'hooky:elsewhere', webhookId, on: is });
    }
  }

  function serve(worker: number, webhookId: string, on: boolean) {
    const set = servers.get(webhookId);
    const before = new Set(set);
    if (on) {
      if (set === undefined) servers.set(webhookId, new Set([worker]));
      else set.add(worker);
    } else if (set !== undefined) {
      set.delete(worker);
      if (set.size === 0) servers.delete(webhookId);
    }
    changed(webhookId, before);
  }

  return {
    joined(worker: number) {
      workers.add(worker);
      for (const [webhookId, set] of servers) if (set.size > 0) send(worker, { type: 'hooky:elsewhere', webhookId, on: true });
    },
    left(worker: number) {
      workers.delete(worker);
      for (const [webhookId, set] of [...servers]) if (set.has(worker)) serve(worker, webhookId, false);
    },
    /** A message from `worker`; false when it is not one of the sibling bus's. */
    message(worker: number, message: unknown): boolean {
      if (!isSibling(message)) return false;
      if (message.type === 'hooky:watch') serve(worker, message.webhookId, message.on);
      else if (message.type === 'hooky:batch') {
        for (const w of servers.get(message.webhookId) ?? []) if (w !== worker) send(w, message);
      }
      return true;
    },
  };
}
