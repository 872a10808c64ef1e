/**
 * A WebSocket session: what the server keeps per connection (dropped with it), and the one way
 * to send it a frame, which notes when uWS dropped one for backpressure.
 */
import { randomUUID } from 'node:crypto';
import type { Metrics } from './metrics.js';
import { wsErrorMessages, type Ref, type ServerEventName, type ServerEvents, type WsErrorCode } from './protocol.js';
import type { Bucket } from './ratelimit.js';
import type { WebSocket } from './uws.js';

/** What the server keeps per connection; it is its own rate limit `Bucket` (ratelimit.ts). */
export interface Session extends Bucket {
  readonly id: string;
  /** The rooms (uWS topics) it is a member of; see rooms.ts. */
  readonly rooms: Set<string>;
  closed: boolean;
  /** Its send buffer is, or is about to be, past the limit: uWS drops a frame and closes it (see realtime's `close`). */
  overLimit: boolean;
  /** Bytes published to its rooms by the batch being checked (rooms.ts). */
  pending: number;
  /** The replays of its joins with `since`, one after the other: each ends before the next starts. */
  replays: Promise<void>;
  /** A replay waiting for the send buffer to drain (replay.ts). */
  onDrain: (() => void) | undefined;
}

export type Socket = WebSocket<Session>;

/** The session of a connection being upgraded, starting from the rate limit's `bucket`. */
export function newSession(bucket: Readonly<Bucket>): Session {
  return {
    id: randomUUID(),
    rooms: new Set(),
    closed: false,
    tokens: bucket.tokens,
    filledAt: bucket.filledAt,
    refused: bucket.refused,
    refusedSince: bucket.refusedSince,
    overLimit: false,
    pending: 0,
    replays: Promise.resolve(),
    onDrain: undefined,
  };
}

/** uWS answers 2 when it dropped the frame for backpressure, and then closes the socket itself. */
export function sent(ws: Socket, status: number): void {
  if (status === 2) ws.getUserData().overLimit = true;
}

/** Sends server frames; an `error` event is counted by its code. */
export function createSender(metrics: Pick<Metrics, 'wsErrors'>) {
  function send<E extends ServerEventName>(ws: Socket, event: E, data: ServerEvents[E], ref?: Ref): void {
    if (ws.getUserData().closed) return;
    sent(ws, ws.send(JSON.stringify(ref === undefined ? { event, data } : { event, data, ref }), false));
  }

  function sendError(ws: Socket, code: WsErrorCode, ref: Ref, extra?: Record<string, unknown>, message: string = wsErrorMessages[code]): void {
    metrics.wsErrors.inc(code);
    send(ws, 'error', { code, message, ...extra }, ref);
  }

  return { send, sendError };
}

export type Sender = ReturnType<typeof createSender>;
