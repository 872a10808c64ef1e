import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { noRequest, type Cursor, type CapturedRow, type Positions, type Store } from './store.js';

export interface RelayOptions {
  /** Rows read from Postgres per query while filling a gap. */
  fillLimit: number;
  /** Payload bytes read per query while filling a gap (a single larger row still goes). */
  fillMaxBytes: number;
  /** Pause between checks of the positions of every room served here, ms. */
  checkIntervalMs: number;
  /**
   * Where other instances' batches arrive with their rows (NATS, the workers' handover), how
   * long a batch held past a gap waits for the batch before it to arrive so, ms, before the
   * gap is read from Postgres. 0 (the NOTIFY bus, where no rows arrive): read at once.
   */
  holdGraceMs?: number;
}

interface Deps {
  store: Store;
  log: Logger;
  metrics: Metrics;
  /** Sends committed rows to their rooms' local members (realtime.publish). */
  publish(rows: readonly CapturedRow[]): void;
  /** A webhook found gone by the periodic check (its deletion notice was lost). */
  deleted(webhookId: string): void;
}

/** A room with members on this instance. */
interface Room {
  readonly webhookId: string;
  /** Everything up to here, in commit order, has been published to the room. */
  at: Cursor;
  /** `at` is the last row of its batch (false after a read cut off by its limit). */
  whole: boolean;
  /** Resolves once `at` is read from Postgres; until then nothing is published. */
  readonly loaded: Promise<void>;
  /**
   * When the webhook served was created, read with `at`. A webhook deleted and created again
   * (its deletion notice lost) starts its positions over; a different creation time says so
   * even once the new positions pass `at`.
   */
  created: string | undefined;
  isLoaded: boolean;
  /** This instance's own committed batches that wait for an earlier one: position → rows. */
  readonly held: Map<number, CapturedRow[]>;
  /** Postgres may hold rows after `at` that were not published: read them. */
  stale: boolean;
  filling: boolean;
  /** A fill is due once `holdGraceMs` is out. */
  waiting: boolean;
}

// Batches held per room while a gap is read; past it a batch is left to the read (it is
// committed, so Postgres has it): memory stays bounded while this instance cannot read Postgres
// and other instances' batches keep arriving with their rows (NATS).
const maxHeld = 64;

/**
 * Publishes every committed request to the rooms served by this instance exactly once and in
 * commit order, whichever instance committed it. A room's cursor (`at`) is the last request
 * published to it; a batch is published at once when it is the next position, otherwise it is
 * held while the gap before it is read from Postgres.
 *
 * - Batches this instance committed come with their rows (`committed`): published at once.
 * - Batches other instances committed are announced by the bus (`announced`): only positions,
 *   so their rows are read from Postgres, and only for rooms with members here.
 * - The bus loses messages (at most once): after it comes back (`resumed`) every room is read
 *   again, and every `checkIntervalMs` one query compares the position of every room served
 *   here with its cursor, so a lost notice is healed within about that time.
 */
export function createRelay(opts: RelayOptions, deps: Deps) {
  const { store, log } = deps;
  const rooms = new Map<string, Room>();
  let checking = false;
  // Whether the last check failed: an outage is logged once, not every second.
  let failing = false;
  // Likewise for fills: batches arriving with their rows (NATS) while Postgres cannot be read
  // would otherwise log one line each.
  let fillFailing = false;

  function publishBatch(room: Room, position: number, rows: readonly CapturedRow[]) {
    deps.publish(rows);
    room.at = { position, id: rows[rows.length - 1]!.id };
    room.whole = true;
  }

  const graceMs = opts.holdGraceMs ?? 0;
  let closed = false;
  function later(room: Room) {
    if (room.waiting) return;
    room.waiting = true;
    setTimeout(() => {
      room.waiting = false;
      // Closed: the shutdown is ending the pool this would read from.
      if (!closed) void fill(room);
    }, graceMs).unref();
  }

  /** Publishes the held batches that now come next. */
  function release(room: Room) {
    while (room.whole) {
      const next = room.held.get(room.at.position + 1);
      if (next === undefined) break;
      room.held.delete(room.at.position + 1);
      publishBatch(room, room.at.position + 1, next);
    }
    for (const position of room.held.keys()) if (position <= room.at.position) room.held.delete(position);
  }

  /** Reads from Postgres until the room has everything committed, then what was held. */
  async function fill(room: Room) {
    if (room.filling || !room.isLoaded) return;
    room.filling = true;
    try {
      for (;;) {
        release(room);
        // A held batch past a gap: the rows before it are committed (positions are commit order).
        if (room.held.size > 0) room.stale = true;
        if (!room.stale || rooms.get(room.webhookId) !== room) return;
        room.stale = false;
        const heldBefore = room.held.size === 0 ? undefined : new Set(room.held.keys());
        const { rows, truncated } = await store.requestsAfter(room.webhookId, room.at, opts.fillLimit, opts.fillMaxBytes);
        fillFailing = false;
        if (rooms.get(room.webhookId) !== room) return;
        if (rows.length > 0) {
          deps.publish(rows.map((r) => ({ id: r.id, webhookId: room.webhookId, json: r.json })));
          const last = rows[rows.length - 1]!;
          room.at = { position: last.position, id: last.id };
          deps.metrics.relayFilled.inc(rows.length);
        }
        // Cut off by the limit, the cursor may stand inside a batch; otherwise nothing is left after it.
        room.whole = !truncated;
        if (truncated) room.stale = true;
        else if (rows.length === 0 && heldBefore !== undefined && room.held.size > 0 && !room.held.has(room.at.position + 1)) {
          // Not expected: a batch held before the read began came after every batch before it,
          // so the read should have found them (positions have no holes). Never hold a batch
          // forever: the next one held goes out. (One held only since the read began may follow
          // a batch the read was too early to see: it waits for the next read.)
          const next = Math.min(...room.held.keys());
          if (!heldBefore.has(next)) continue;
          log.warn('relay: no rows between a room\'s cursor and a held batch', { webhookId: room.webhookId, at: room.at.position, next });
          room.at = { position: next - 1, id: noRequest };
          room.whole = true;
        }
        // Held batches that were committed after the read began are released on the next turn.
      }
    } catch (err) {
      // Postgres is away: the periodic check tries again.
      room.stale = true;
      if (!fillFailing) log.warn('relay: reading committed requests failed; will retry', { webhookId: room.webhookId, err });
      fillFailing = true;
    } finally {
      room.filling = false;
    }
  }

  async function check() {
    if (checking || rooms.size === 0) return;
    checking = true;
    try {
      // The cursors as they stood before the query: each is at or below what the query sees,
      // unless the webhook was deleted (and maybe created again, its positions starting over).
      const before = new Map([...rooms.values()].map((r) => [r, r.at.position]));
      const reached = await store.positions([...rooms.keys()]);
      failing = false;
      for (const [room, at] of before) {
        if (!room.isLoaded || rooms.get(room.webhookId) !== room) continue;
        const now = reached.get(room.webhookId);
        // Its deletion notice was lost (and it may have been created again since).
        if (now === undefined || now.position < at || now.created !== room.created) {
          deps.deleted(room.webhookId);
          continue;
        }
        if (now.position > room.at.position) room.stale = true;
        if (room.stale || room.held.size > 0) void fill(room);
      }
    } catch (err) {
      if (!failing) log.warn('relay: checking positions failed; trying again every interval', { err });
      failing = true;
    } finally {
      checking = false;
    }
  }

  const timer = setInterval(check, opts.checkIntervalMs);
  timer.unref();

  return {
    /**
     * Serves a room here from now on (its first member joined; again for later joins). Resolves
     * with the last request published to it (null: none yet): everything committed after that
     * is published to the room.
     */
    async watch(webhookId: string): Promise<string | null> {
      let room = rooms.get(webhookId);
      if (room === undefined) {
        const loading: Room = {
          webhookId,
          at: { position: 0, id: noRequest },
          whole: true,
          loaded: store.standing(webhookId).then((standing) => {
            // Gone already: the first check reports it deleted.
            if (standing?.latest) loading.at = standing.latest;
            loading.created = standing?.created;
            loading.isLoaded = true;
            void fill(loading);
          }),
          created: undefined,
          isLoaded: false,
          held: new Map(),
          stale: false,
          filling: false,
          waiting: false,
        };
        room = loading;
        rooms.set(webhookId, room);
        // A failed load leaves no room behind: the next join tries again.
        room.loaded.catch(() => rooms.get(webhookId) === loading && rooms.delete(webhookId));
      }
      await room.loaded;
      return room.at.position === 0 ? null : room.at.id;
    },

    /** The room's last member left. */
    unwatch(webhookId: string): void {
      rooms.delete(webhookId);
    },

    /** This instance committed these rows; `positions` as the INSERT answered (empty: unknown). */
    committed(rows: readonly CapturedRow[], positions: Positions): void {
      if (rooms.size === 0) return;
      // Most batches hold one webhook, or only webhooks without members here.
      let byRoom: Map<Room, CapturedRow[]> | undefined;
      for (const row of rows) {
        const room = rooms.get(row.webhookId);
        if (room === undefined) continue;
        byRoom ??= new Map();
        const list = byRoom.get(room);
        if (list === undefined) byRoom.set(room, [row]);
        else list.push(row);
      }
      if (byRoom === undefined) return;
      for (const [room, list] of byRoom) {
        const position = positions.get(room.webhookId);
        if (position === undefined) room.stale = true;
        else if (position <= room.at.position) continue;
        else if (room.isLoaded && !room.filling && room.whole && room.held.size === 0 && position === room.at.position + 1) {
          publishBatch(room, position, list);
          continue;
        } else if (room.held.size >= maxHeld) room.stale = true;
        else room.held.set(position, list);
        // Past a gap: the batch before it may be on its way with its rows (holdGraceMs).
        if (graceMs > 0 && !room.stale && position !== undefined && position > room.at.position + 1) later(room);
        else void fill(room);
      }
    },

    /** Another instance committed up to `position` for this webhook (undefined: look it up). */
    announced(webhookId: string, position: number | undefined): void {
      const room = rooms.get(webhookId);
      if (room === undefined || (position !== undefined && position <= room.at.position)) return;
      room.stale = true;
      void fill(room);
    },

    /** The bus was away: anything may have been missed, in every room. */
    resumed(): void {
      deps.metrics.busResumes.inc();
      for (const room of rooms.values()) {
        room.stale = true;
        void fill(room);
      }
    },

    /** Stops the periodic check. Safe to call twice. */
    close(): void {
      closed = true;
      clearInterval(timer);
    },
  };
}

export type Relay = ReturnType<typeof createRelay>;
