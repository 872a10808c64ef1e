import type { CapturedRequest } from '../protocol.js';

/**
 * Where one room stands in the stream of its webhook's requests. Request ids are UUIDv7 in
 * lower-case hex, and the server commits and publishes them in id order, so plain string order is
 * capture order: a request at or below the cursor has been delivered already.
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
}

export function createRoom(webhookId: string, since?: string): RoomState {
  return { webhookId, cursor: since, floor: undefined, replaying: false, held: [] };
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

/** Ends a replay: the held live requests follow in id order, less those the replay already sent. */
export function endReplay(room: RoomState, deliver: (req: CapturedRequest) => void): void {
  const held = room.held.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
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
  if (room.cursor !== undefined && req.id <= room.cursor) return false;
  room.cursor = req.id;
  return true;
}
