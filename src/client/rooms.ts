/**
 * The rooms the SDK follows: the rejoin set (each room's waiters and join in flight), and where
 * each room stands in its webhook's stream, so that every request is delivered once, in order.
 */
import { requestIdFloor, roomOf, transientWsErrors, type CapturedRequest, type ServerEvents } from '../protocol.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import type { PendingJoin, PendingRequests } from './pending.js';

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

// --- the rejoin set -----------------------------------------------------------------------------

type Ref = number | string;
type Joined = ServerEvents['joined'];
/** What a join is refused with: the server's `error` data, or the client's own (`LEFT`, `CLOSED`, …). */
export interface Refusal {
  code: string;
  message: string;
  webhookId?: string;
  [extra: string]: unknown;
}

interface Waiter {
  resolve(data: Joined): void;
  reject(err: Refusal): void;
}

/** A room in the rejoin set. */
interface Entry {
  room: RoomState;
  waiters: Waiter[];
  /** The ref of this room's join in flight on the current connection. */
  joinRef: number | undefined;
  joined: boolean;
  retries: number;
}

interface Deps {
  pending: PendingRequests;
  /** Sends a frame on the current connection, if there is one. */
  send(frame: object): void;
  /** A connection is open. */
  open(): boolean;
  joined(data: Joined): void;
  deliver(req: CapturedRequest): void;
}

export function createRooms(o: BackoffOptions, deps: Deps) {
  const { pending } = deps;
  const rooms = new Map<string, Entry>();
  const retryTimers = new Set<ReturnType<typeof setTimeout>>();

  function sendJoin(entry: Entry, page = false) {
    const { webhookId } = entry.room;
    const since = resumeFrom(entry.room);
    const ref = pending.join(webhookId, page);
    entry.joinRef = ref;
    entry.room.replaying = since !== undefined;
    deps.send({ event: 'join', data: since === undefined ? { webhookId } : { webhookId, since }, ref });
  }

  function drop(entry: Entry, err: Refusal) {
    if (rooms.get(entry.room.webhookId) === entry) rooms.delete(entry.room.webhookId);
    for (const w of entry.waiters.splice(0)) w.reject(err);
  }

  function clearRetries() {
    for (const t of retryTimers) clearTimeout(t);
    retryTimers.clear();
  }

  return {
    /** Follows a room: resolves on its `joined`, rejects with what refused it. */
    follow(webhookId: string, since: string | undefined): Promise<Joined> {
      let entry = rooms.get(webhookId);
      if (entry?.joined) return Promise.resolve({ webhookId, room: roomOf(webhookId) });
      if (!entry) {
        entry = { room: createRoom(webhookId, since), waiters: [], joinRef: undefined, joined: false, retries: 0 };
        rooms.set(webhookId, entry);
        if (deps.open()) sendJoin(entry);
      }
      const waiting = entry;
      return new Promise((resolve, reject) => waiting.waiters.push({ resolve, reject }));
    },

    /** Stops following a room; a join still pending rejects with `why`. */
    unfollow(webhookId: string, why: Refusal): void {
      const entry = rooms.get(webhookId);
      if (entry) drop(entry, why);
    },

    /** A connection opened: every room is joined on it, from its cursor. */
    rejoinAll(): void {
      for (const entry of rooms.values()) sendJoin(entry);
    },

    /** Sends a join again (after a rate-limit refusal); false when it was superseded. */
    rejoin(ref: Ref, p: PendingJoin): boolean {
      const entry = rooms.get(p.webhookId);
      if (!entry || entry.joinRef !== ref) return false;
      sendJoin(entry, p.page);
      return true;
    },

    /** The link is gone: every room waits for the next one, which rejoins it from its cursor. */
    lost(): void {
      clearRetries();
      for (const entry of rooms.values()) {
        entry.joined = false;
        entry.joinRef = undefined;
        interrupt(entry.room);
      }
    },

    /** Stops for good: every pending join rejects with `why`. */
    dropAll(why: Refusal): void {
      clearRetries();
      for (const entry of rooms.values()) drop(entry, { ...why, webhookId: entry.room.webhookId });
    },

    joined(data: Joined, ref: Ref | undefined): void {
      if (ref === undefined) return;
      const entry = rooms.get(data.webhookId);
      // A reply to a join that a leave (or a newer join) has superseded.
      if (!entry || ref !== entry.joinRef) return void pending.delete(ref);
      const p = pending.get(ref);
      if (p?.kind === 'join') p.answered = true;
      // Without a replay to follow, the join is complete.
      if (!entry.room.replaying) {
        pending.delete(ref);
        entry.retries = 0;
      }
      if (p?.kind === 'join' && p.page) return;
      entry.joined = true;
      // A room with no request delivered yet resumes from where the server says it joined:
      // everything after `last` reached us live (null: the webhook had none, so from the start).
      if (resumeFrom(entry.room) === undefined && data.last !== undefined) {
        entry.room.floor = data.last ?? requestIdFloor(0);
      }
      deps.joined(data);
      for (const w of entry.waiters.splice(0)) w.resolve(data);
    },

    newRequest(req: CapturedRequest, ref: Ref | undefined): void {
      const entry = rooms.get(req.webhookId);
      if (!entry) return;
      // Replayed requests carry their join's ref; one from a superseded join is not ours.
      if (ref !== undefined && ref !== entry.joinRef) return;
      receive(entry.room, req, ref !== undefined, deps.deliver);
    },

    replayed(data: ServerEvents['replayed'], ref: Ref | undefined): void {
      if (ref === undefined) return;
      pending.delete(ref);
      const entry = rooms.get(data.webhookId);
      if (!entry || ref !== entry.joinRef) return;
      // The server sends at most HOOKY_REPLAY_LIMIT per join: ask for the next page.
      if (data.truncated) return sendJoin(entry, true);
      entry.retries = 0;
      endReplay(entry.room, deps.deliver);
    },

    /** A join the server refused: dropped when no retry can help, else sent again after a backoff. */
    refused(p: PendingJoin, ref: Ref, err: Refusal): void {
      const entry = rooms.get(p.webhookId);
      if (!entry || entry.joinRef !== ref) return;
      if (!transientWsErrors.has(err.code)) return drop(entry, err);
      // Live requests stay held and the cursor stays put: the retry resumes from it.
      const timer = setTimeout(() => {
        retryTimers.delete(timer);
        // Already joined on this connection (the replay failed): the retry is a page, not a new `joined`.
        if (deps.open() && rooms.get(p.webhookId) === entry) sendJoin(entry, p.page || entry.joined);
      }, backoffDelay(++entry.retries, o));
      retryTimers.add(timer);
    },

    /** The server has emptied the room (`WEBHOOK_DELETED`): following it again would only fail. */
    deleted(webhookId: string, err: Refusal): void {
      const entry = rooms.get(webhookId);
      if (entry) drop(entry, err);
    },
  };
}
