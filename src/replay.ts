/**
 * Replay: what a `join` with `since` missed, sent oldest first in commit order, paged by bytes,
 * each page held from the server-wide read budget and the next one fetched only once the socket
 * has drained. One replay at a time per connection.
 */
import type { Budget } from './budget.js';
import type { Metrics } from './metrics.js';
import { newRequestFrame, type Ref } from './protocol.js';
import { sent, type Sender, type Socket } from './session.js';
import type { Store } from './store.js';

export interface ReplayOptions {
  /** Requests per replay at most (HOOKY_REPLAY_LIMIT). */
  replayLimit: number;
  /** Payload bytes per replay page; a page holds at least one request. */
  maxPageBytes: number;
}

interface Deps {
  store: Pick<Store, 'cursorOf' | 'pageAfter' | 'payloadsOf'>;
  /** Payload bytes held for listings and replays, server-wide (HOOKY_MAX_READ_BYTES). */
  reads: Budget;
  metrics: Pick<Metrics, 'readRefusals'>;
  send: Sender['send'];
  sendError: Sender['sendError'];
}

/**
 * A replay sends its next page once the socket's send buffer is down to this: the page before it
 * has then reached the kernel, and its hold on the read budget is given back.
 */
export const replayLowWater = 256 * 1024;
/** What an OVERLOADED refusal of a replay suggests waiting before the join is sent again. */
const overloadedRetryMs = 1000;

export function createReplay(opts: ReplayOptions, deps: Deps) {
  const { store, reads, metrics, send, sendError } = deps;

  /**
   * Sends what was committed after `since`, oldest first, page by page: a page ends at
   * HOOKY_MAX_PAGE_BYTES of payload (or one request, however large), its bytes are held from the
   * read budget before it is fetched, and the next page is fetched only once the socket's send
   * buffer has drained to `replayLowWater`. A replay holds about one page, whatever the client's
   * speed. When the budget refuses a page, the replay stops with OVERLOADED and `last`, from where
   * a new `join` resumes.
   */
  async function replayFrom(ws: Socket, webhookId: string, room: string, since: string, ref: Ref) {
    const session = ws.getUserData();
    // Replayed events echo the join's ref, which tells them apart from live ones. The replay
    // follows commit order from the place of `since` (store.cursorOf), so a request another
    // instance committed out of id order is not skipped.
    // A socket that left the room (`leave`, or its webhook was deleted) is sent nothing more of
    // it: no page after the one in its send buffer, and no `replayed`. (One that joined again
    // meanwhile is a member again: the rest comes, overlapping what its new join sends.)
    const member = () => !session.closed && session.rooms.has(room);
    let cursor = await store.cursorOf(webhookId, since);
    let count = 0;
    let more = true;
    while (more && count < opts.replayLimit && member()) {
      const page = await store.pageAfter(webhookId, cursor, opts.replayLimit - count, opts.maxPageBytes);
      more = page.more;
      if (!member() || page.last === undefined) break;
      const hold = reads.hold();
      if (!hold.take(page.bytes)) {
        metrics.readRefusals.inc();
        return sendError(ws, 'OVERLOADED', ref, { webhookId, last: cursor.id, retryAfterMs: overloadedRetryMs });
      }
      try {
        const json = await store.payloadsOf(webhookId, page.ids);
        if (!member()) return;
        ws.cork(() => {
          for (const payload of json) sent(ws, ws.send(newRequestFrame(payload, ref), false));
        });
        // A row deleted since its page was cut (retention) is skipped; the cursor moves past it all the same.
        count += json.length;
        cursor = page.last;
        await drained(ws);
      } finally {
        hold.release();
      }
    }
    if (!member()) return;
    send(ws, 'replayed', { webhookId, room, count, truncated: more, last: cursor.id }, ref);
  }

  /** Resolves once the socket's send buffer is down to `replayLowWater`, or it closed. */
  function drained(ws: Socket): Promise<void> {
    const session = ws.getUserData();
    if (session.closed || ws.getBufferedAmount() <= replayLowWater) return Promise.resolve();
    return new Promise((resolve) => {
      session.onDrain = () => {
        session.onDrain = undefined;
        resolve();
      };
    });
  }

  return {
    /**
     * Replays the room after `since` once the connection's earlier replays have ended: ten joins
     * at once replay one after the other. Rejects if this replay fails; the next ones still run.
     */
    replay(ws: Socket, webhookId: string, room: string, since: string, ref: Ref): Promise<void> {
      const session = ws.getUserData();
      const replay = session.replays.then(() => replayFrom(ws, webhookId, room, since, ref));
      // Its failure is reported by the join that awaits it; the chain only waits for its end.
      session.replays = replay.catch(() => {});
      return replay;
    },

    /** uWS's `drain`: a replay waiting for this socket's send buffer goes on once it is low enough. */
    drain(ws: Socket): void {
      const session = ws.getUserData();
      if (session.onDrain !== undefined && ws.getBufferedAmount() <= replayLowWater) session.onDrain();
    },

    /** The socket closed: a replay waiting for it to drain gives its page back. */
    closed(ws: Socket): void {
      ws.getUserData().onDrain?.();
    },
  };
}

export type Replay = ReturnType<typeof createReplay>;
