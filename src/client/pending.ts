/**
 * The SDK's requests awaiting their reply, by `ref`: joins and leaves sent on the current
 * connection, and the resending of those a rate-limit refusal may have been about.
 */
import { roomOf } from '../protocol.js';

type Ref = number | string;
interface Left {
  webhookId: string;
  room: string;
}

export type PendingJoin = {
  kind: 'join';
  webhookId: string;
  /** A follow-up join of a truncated (or failed) replay: its `joined` is not emitted again. */
  page: boolean;
  /** Its `joined` arrived (a replay may still be running). */
  answered: boolean;
};
export type PendingLeave = {
  kind: 'leave';
  webhookId: string;
  /** Resolved or rejected: a reply to an earlier send of the same leave is then ignored. */
  settled: boolean;
  resolve(data: Left): void;
  reject(err: Error): void;
};
export type Pending = PendingJoin | PendingLeave;

interface Deps {
  /** Sends a frame on the current connection, if there is one. */
  send(frame: object): void;
  /** Sends a join again under a new ref; false when it was superseded (left, or joined anew). */
  rejoin(ref: Ref, p: PendingJoin): boolean;
}

export function createPending(o: { minDelayMs: number; maxDelayMs: number }, deps: Deps) {
  const pending = new Map<Ref, Pending>();
  // Requests a RATE_LIMITED refusal may have been about, to send again (see `throttled`).
  const suspects = new Set<Ref>();
  let refs = 0;
  let resend: ReturnType<typeof setTimeout> | undefined;
  let resendDelay = 0;

  const unanswered = (p: Pending) => (p.kind === 'join' ? !p.answered : !p.settled);

  function settleLeave(p: PendingLeave, outcome: { left: Left } | { err: Error }): boolean {
    if (p.settled) return false;
    p.settled = true;
    if ('left' in outcome) p.resolve(outcome.left);
    else p.reject(outcome.err);
    return true;
  }

  function resendOne() {
    resend = undefined;
    for (const ref of suspects) {
      suspects.delete(ref);
      const p = pending.get(ref);
      if (!p || !unanswered(p)) continue;
      if (p.kind === 'join') {
        pending.delete(ref);
        // Not superseded by a leave or a newer join: sent again, under a new ref.
        if (!deps.rejoin(ref, p)) continue;
      } else {
        // Both refs lead to the same leave: whichever reply comes first settles it.
        const again = ++refs;
        pending.set(again, p);
        deps.send({ event: 'leave', data: { webhookId: p.webhookId }, ref: again });
      }
      break;
    }
    if (suspects.size > 0) resend = setTimeout(resendOne, resendDelay);
  }

  return {
    get: (ref: Ref) => pending.get(ref),
    delete: (ref: Ref) => pending.delete(ref),

    /** Records a join about to be sent; returns its ref. */
    join(webhookId: string, page: boolean): number {
      const ref = ++refs;
      pending.set(ref, { kind: 'join', webhookId, page, answered: false });
      return ref;
    },

    /** Sends a leave; resolves on its `left`, rejects on its `error`. */
    leave(webhookId: string): Promise<Left> {
      const ref = ++refs;
      const p = new Promise<Left>((resolve, reject) => pending.set(ref, { kind: 'leave', webhookId, settled: false, resolve, reject }));
      deps.send({ event: 'leave', data: { webhookId }, ref });
      return p;
    },

    /** Settles a leave once; false when it was settled already (the reply to its other send). */
    settleLeave,

    /**
     * The server's rate limit refused a frame. It did not read it, so the refusal carries no ref:
     * any request still unanswered may be the one. After `retryAfterMs`, each of them that is
     * still unanswered then is sent again, one per `retryAfterMs`, which is the pace the server's
     * bucket refills at. Sending a join or a leave twice does no harm: the server treats both as
     * idempotent, and the reply to the superseded ref is ignored.
     */
    throttled(retryAfterMs: unknown): void {
      resendDelay = typeof retryAfterMs === 'number' && retryAfterMs >= 0 ? Math.min(retryAfterMs, o.maxDelayMs) : o.minDelayMs;
      for (const [ref, p] of pending) if (unanswered(p)) suspects.add(ref);
      // Nothing unanswered: the refused frame was a ping, which the next one replaces.
      if (suspects.size > 0) resend ??= setTimeout(resendOne, resendDelay);
    },

    /**
     * The connection is gone, so no reply will come. The server drops every membership with
     * the connection: a pending leave is done. Pending joins are forgotten: the next connection
     * sends every room's join anew.
     */
    reset(): void {
      clearTimeout(resend);
      resend = undefined;
      suspects.clear();
      for (const p of pending.values()) if (p.kind === 'leave') settleLeave(p, { left: { webhookId: p.webhookId, room: roomOf(p.webhookId) } });
      pending.clear();
    },
  };
}

export type PendingRequests = ReturnType<typeof createPending>;
