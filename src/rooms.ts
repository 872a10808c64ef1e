/**
 * Rooms: which sockets are members of which webhook's room, telling the relay which rooms this
 * instance serves, and publishing committed requests to them with the backpressure prediction.
 * A room is the uWS topic `webhook:<id>`, so a broadcast is one `app.publish` that uWS fans out
 * in C++, never a loop over sockets in JS. Whatever delivers committed rows to this instance
 * (the relay, fed by this instance's writer and by the bus between instances) publishes here.
 */
import type { Metrics } from './metrics.js';
import { newRequestFrame, roomOf } from './protocol.js';
import type { Relay } from './relay.js';
import type { Sender, Socket } from './session.js';
import type { CapturedRow } from './store.js';
import type { TemplatedApp } from './uws.js';

export interface RoomsOptions {
  /** A member's send buffer limit in bytes (HOOKY_WS_MAX_BUFFER): uWS closes a socket past it. */
  maxBuffer: number;
}

interface Deps {
  /** Which rooms this instance serves: told when a room gets its first member and loses its last. */
  relay: Pick<Relay, 'watch' | 'unwatch'>;
  metrics: Pick<Metrics, 'joinedRooms' | 'publishes'>;
  sendError: Sender['sendError'];
}

export interface Rooms {
  /**
   * Makes the socket a member of the webhook's room (nothing changes if it is one already), then
   * resolves with the relay's resume point for the room: the last request published to it (null:
   * none yet). If the relay cannot serve the room, the socket leaves it and this rejects.
   */
  join(ws: Socket, webhookId: string): Promise<string | null>;
  /** The socket leaves the webhook's room, if it is in it. */
  leave(ws: Socket, webhookId: string): void;
  /** The socket closed: it is dropped from every room (uWS has unsubscribed it already). */
  dropped(ws: Socket): void;
  /** Sends each committed request to its room; the JSON was serialised once, at capture. */
  publish(rows: readonly CapturedRow[]): void;
  /** Tells a deleted webhook's room, then empties it. */
  webhookDeleted(webhookId: string): void;
}

const roomPrefix = roomOf('');

export function createRooms(app: Pick<TemplatedApp, 'publish'>, opts: RoomsOptions, deps: Deps): Rooms {
  const { metrics } = deps;
  // The members of each room, kept beside uWS's topics: for emptying a deleted webhook's room and
  // for checking the send buffers of the sockets a publish just reached.
  const members = new Map<string, Set<Socket>>();

  function leaveRoom(ws: Socket, room: string) {
    if (!ws.getUserData().rooms.delete(room)) return;
    ws.unsubscribe(room);
    forget(ws, room);
    metrics.joinedRooms.dec();
  }

  function forget(ws: Socket, room: string) {
    const set = members.get(room);
    if (set === undefined) return;
    set.delete(ws);
    if (set.size === 0) {
      members.delete(room);
      deps.relay.unwatch(room.slice(roomPrefix.length));
    }
  }

  /**
   * Flags the members of the rooms a batch reached whose send buffer, with the bytes just
   * published to them, passes the limit. uWS queues publishes under 16 KiB and writes them after
   * this returns, at the end of the loop iteration; a frame it then drops closes the socket before
   * any JavaScript runs again, so the buffer cannot be read afterwards: it is predicted here.
   * A flagged socket that is still open on the next turn was not dropped after all (its reader
   * kept up, or the kernel took the bytes): the flag is cleared then.
   */
  function checkBuffers(reached: Map<Set<Socket>, number>) {
    for (const [set, bytes] of reached) for (const ws of set) ws.getUserData().pending += bytes;
    let flagged: Socket[] | undefined;
    for (const set of reached.keys()) {
      for (const ws of set) {
        const session = ws.getUserData();
        if (session.pending === 0) continue; // already checked through another room
        if (ws.getBufferedAmount() + session.pending > opts.maxBuffer && !session.overLimit) {
          session.overLimit = true;
          (flagged ??= []).push(ws);
        }
        session.pending = 0;
      }
    }
    if (flagged !== undefined) setImmediate(clearSurvivors, flagged);
  }

  function clearSurvivors(flagged: Socket[]) {
    for (const ws of flagged) {
      const session = ws.getUserData();
      if (!session.closed && ws.getBufferedAmount() <= opts.maxBuffer) session.overLimit = false;
    }
  }

  return {
    join(ws, webhookId) {
      const session = ws.getUserData();
      const room = roomOf(webhookId);
      if (!session.rooms.has(room)) {
        // Subscribed before the relay is asked and before any replay query: a request committed
        // meanwhile is either in the query's result or published to us afterwards, possibly
        // both, never neither.
        ws.subscribe(room);
        session.rooms.add(room);
        let set = members.get(room);
        if (set === undefined) members.set(room, (set = new Set()));
        set.add(ws);
        metrics.joinedRooms.inc();
      }
      // After subscribing: the relay publishes to the room everything committed after the point
      // it answers, so that point cannot skip anything.
      return deps.relay.watch(webhookId).catch((err: unknown) => {
        // Not served here after all: nothing would be published to it.
        leaveRoom(ws, room);
        throw err;
      });
    },

    leave(ws, webhookId) {
      leaveRoom(ws, roomOf(webhookId));
    },

    dropped(ws) {
      const session = ws.getUserData();
      metrics.joinedRooms.dec(session.rooms.size);
      for (const room of session.rooms) forget(ws, room);
      session.rooms.clear();
    },

    publish(rows) {
      // Bytes published per room, for the backpressure check: one native call per member after.
      let reached: Map<Set<Socket>, number> | undefined;
      for (const row of rows) {
        const room = roomOf(row.webhookId);
        const set = members.get(room);
        if (set === undefined) continue;
        const frame = newRequestFrame(row.json);
        app.publish(room, frame, false);
        metrics.publishes.inc();
        reached ??= new Map();
        reached.set(set, (reached.get(set) ?? 0) + Buffer.byteLength(frame));
      }
      if (reached !== undefined) checkBuffers(reached);
    },

    webhookDeleted(webhookId) {
      const room = roomOf(webhookId);
      // Sent to each member directly: a publish is delivered when uWS drains its topic tree,
      // and by then the unsubscribe below would have dropped it.
      for (const ws of [...(members.get(room) ?? [])]) {
        ws.cork(() => {
          deps.sendError(ws, 'WEBHOOK_DELETED', undefined, { webhookId });
          leaveRoom(ws, room);
        });
      }
    },
  };
}
