import type { CapturedRequest } from '../protocol.js';

/**
 * Where one room stands in the stream of its webhook's requests. The server publishes a room's
 * requests in commit order, and a replay from `since` sends what was committed after that
 * request, in the same order. Commit order is not id order when several hooky instances share a
 * database, so a request with an id below the cursor may still be new: duplicates (a live
 * request the replay also sent) are recognised by id among the last ones delivered.
 */
export interface RoomState {
  readonly webhookId: string;
  /** The last request delivered. It only moves over contiguous delivery, so it is a safe `since`. */
  cursor: string | undefined;
  /** Where to resume when nothing was delivered yet: the server's newest id at the join. */
  floor: string | undefined;
  /** A `join` with `since` is replaying; live requests wait in `held` until it ends. */
  replaying: boolean;
  held: CapturedRequest[];
  /** The ids of the last `recentIds` requests delivered, oldest first, for dropping duplicates. */
  recent: Set<string>;
}

/**
 * How many delivered ids a room remembers. A duplicate is a request committed between a join's
 * subscription and its replay query, both sent: the newest few of a replay.
 */
const recentIds = 1024;

export function createRoom(webhookId: string, since?: string): RoomState {
  return { webhookId, cursor: since, floor: undefined, replaying: false, held: [], recent: new Set(since === undefined ? [] : [since]) };
}

/** The `since` of the next join, if any. */
export const resumeFrom = (room: RoomState): string | undefined => room.cursor ?? room.floor;

/**
 * Takes one `new-request`. A replayed one (it carries the join's ref) is delivered at once: the
 * replay is gap-free and oldest first. A live one that arrives during a replay is held back, so
 * the cursor never jumps past requests the replay has yet to send.
 */
export function receive(room: RoomState, req: CapturedRequest, replayed: boolean, deliver: (req: CapturedRequest) => void): void {
  if (!replayed && room.replaying) {
    room.held.push(req);
    return;
  }
  if (advance(room, req)) deliver(req);
}

/** Ends a replay: the held live requests follow in the order they came, less those the replay already sent. */
export function endReplay(room: RoomState, deliver: (req: CapturedRequest) => void): void {
  const held = room.held;
  room.replaying = false;
  room.held = [];
  for (const req of held) if (advance(room, req)) deliver(req);
}

/**
 * The connection is gone mid-replay: what was held is dropped, not delivered. The cursor stayed
 * below it, so the next join's replay sends it again, in order.
 */
export function interrupt(room: RoomState): void {
  room.replaying = false;
  room.held = [];
}

function advance(room: RoomState, req: CapturedRequest): boolean {
  if (room.recent.has(req.id)) return false;
  room.recent.add(req.id);
  if (room.recent.size > recentIds) room.recent.delete(room.recent.values().next().value!);
  room.cursor = req.id;
  return true;
}
