/**
 * `/ws`: the hooky.v1 protocol over uWS. This module wires the WebSocket route (open, message,
 * drain, close), reads and dispatches client frames (join, leave, ping) and closes every socket at
 * shutdown; the upgrade checks are upgrade.ts, membership and publishing rooms.ts, replays
 * replay.ts, the message rate ratelimit.ts, the per-connection state session.ts.
 */
import * as v from 'valibot';
import type { Auth } from './auth.js';
import type { Budget } from './budget.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { clientSchemas, EnvelopeSchema, PROTOCOL, RefSchema, roomOf, type ClientEvent, type Ref } from './protocol.js';
import { createRateLimit } from './ratelimit.js';
import type { Relay } from './relay.js';
import { createReplay } from './replay.js';
import { createRooms } from './rooms.js';
import { createSender, newSession, type Session, type Socket } from './session.js';
import type { Store } from './store.js';
import { answerPlainGet, createUpgrade } from './upgrade.js';
import { uws, type TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';

export interface RealtimeOptions {
  maxPayload: number;
  maxBuffer: number;
  idleTimeout: number;
  maxRooms: number;
  replayLimit: number;
  /** Payload bytes per replay page; a page holds at least one request. */
  maxPageBytes: number;
  maxConnections: number;
  /** Frames per second per connection; 0 = no limit. */
  rateLimit: number;
  rateBurst: number;
}

interface Deps {
  auth: Auth;
  store: Store;
  /** Which rooms this instance serves: told when a room gets its first member and loses its last. */
  relay: Pick<Relay, 'watch' | 'unwatch'>;
  webhooks: WebhookCache;
  metrics: Metrics;
  log: Logger;
  /** Payload bytes held for listings and replays, server-wide (HOOKY_MAX_READ_BYTES). */
  reads: Budget;
  isDraining: () => boolean;
}

export function createRealtime(app: TemplatedApp, opts: RealtimeOptions, deps: Deps) {
  const { store, webhooks, metrics, log, reads } = deps;
  // Every open socket, for shutdown.
  const sockets = new Set<Socket>();
  const { send, sendError } = createSender(metrics);
  const rate = createRateLimit(opts);
  const rooms = createRooms(app, opts, { relay: deps.relay, metrics, sendError });
  const replays = createReplay(opts, { store, reads, metrics, send, sendError });

  async function join(ws: Socket, webhookId: string, since: string | undefined, ref: Ref) {
    const session = ws.getUserData();
    const room = roomOf(webhookId);
    if (!session.rooms.has(room)) {
      if (session.rooms.size >= opts.maxRooms) {
        return sendError(ws, 'TOO_MANY_ROOMS', ref, { webhookId, maxRooms: opts.maxRooms });
      }
      const found = webhooks.find(webhookId);
      // A miss the cache remembers is asked again: the webhook may have been created through
      // another instance a moment ago, its notice still on the bus.
      const webhook = found instanceof Promise ? await found : (found ?? (await webhooks.read(webhookId)));
      if (session.closed) return;
      if (!webhook) return sendError(ws, 'WEBHOOK_NOT_FOUND', ref, { webhookId });
      // Checked again: another join may have completed while we waited.
      if (!session.rooms.has(room) && session.rooms.size >= opts.maxRooms) {
        return sendError(ws, 'TOO_MANY_ROOMS', ref, { webhookId, maxRooms: opts.maxRooms });
      }
    }
    // Joined (subscribed) before the replay below is read: `last` is a resume point that cannot
    // skip anything, and the replay overlaps what is published live rather than leaving a gap.
    const latest = await rooms.join(ws, webhookId);
    if (session.closed) return;
    if (since === undefined) return send(ws, 'joined', { webhookId, room, last: latest }, ref);
    send(ws, 'joined', { webhookId, room }, ref);
    await replays.replay(ws, webhookId, room, since, ref);
  }

  /** How the server closes a connection: `disconnect` with the reason, then the close frame. */
  function closeWith(ws: Socket, code: number, reason: string) {
    ws.cork(() => {
      send(ws, 'disconnect', { reason });
      ws.end(code, reason);
    });
  }

  /**
   * A refused frame is answered RATE_LIMITED without being read (so without its ref); a client
   * that keeps going is told `disconnect`, then closed with 1008.
   */
  function withinRate(ws: Socket): boolean {
    const bucket = ws.getUserData();
    const verdict = rate.take(bucket, Date.now());
    if (verdict === 'pass') return true;
    if (verdict === 'close') {
      metrics.rateLimitCloses.inc();
      closeWith(ws, 1008, 'rate limit exceeded');
      return false;
    }
    sendError(ws, 'RATE_LIMITED', undefined, { retryAfterMs: rate.retryAfterMs(bucket) });
    return false;
  }

  function onMessage(ws: Socket, message: ArrayBuffer, isBinary: boolean) {
    if (message.byteLength > opts.maxPayload) return closeWith(ws, 1009, 'message too big');
    if (!withinRate(ws)) return;
    if (isBinary) return sendError(ws, 'BAD_MESSAGE', undefined, { reason: 'binary frames are not accepted; send JSON text frames' });
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(message).toString('utf8'));
    } catch {
      // Not JSON is the client's mistake, answered with an error event; nothing to log.
      return sendError(ws, 'BAD_MESSAGE', undefined, { reason: 'the frame is not JSON' });
    }
    const ref = refOf(parsed);
    const envelope = v.safeParse(EnvelopeSchema, parsed);
    if (!envelope.success) {
      return sendError(ws, 'BAD_MESSAGE', ref, { reason: 'the frame must be an object with a string "event"' });
    }
    const event = envelope.output.event;
    if (!Object.hasOwn(clientSchemas, event)) {
      return sendError(ws, 'UNKNOWN_EVENT', ref, { event: event.slice(0, 64), supported: Object.keys(clientSchemas) });
    }
    const result = v.safeParse(clientSchemas[event as ClientEvent], parsed);
    if (!result.success) {
      return sendError(ws, 'BAD_MESSAGE', ref, { event, reason: v.summarize(result.issues) });
    }
    const msg = result.output;
    switch (msg.event) {
      case 'join':
        join(ws, msg.data.webhookId, msg.data.since, msg.ref).catch((err: unknown) => {
          log.error('join failed', { webhookId: msg.data.webhookId, err });
          sendError(ws, 'INTERNAL', msg.ref, { webhookId: msg.data.webhookId });
        });
        return;
      case 'leave':
        rooms.leave(ws, msg.data.webhookId);
        return send(ws, 'left', { webhookId: msg.data.webhookId, room: roomOf(msg.data.webhookId) }, msg.ref);
      case 'ping':
        return send(ws, 'pong', {}, msg.ref);
    }
  }

  app.ws<Session>('/ws', {
    compression: uws.DISABLED,
    // uWS cuts a frame over its limit at the header, with no close frame (the peer sees 1006).
    // Its limit sits above ours so that frames over ours arrive and get the contract's 1009;
    // only frames over this ceiling are cut, so a peer still cannot make us buffer without bound.
    maxPayloadLength: hardPayloadCeiling(opts.maxPayload),
    maxBackpressure: opts.maxBuffer,
    // A boolean in the C++ binding (the typings say number): a client whose send buffer passes
    // maxBackpressure is closed rather than buffered without bound or silently skipped.
    closeOnBackpressureLimit: 1,
    idleTimeout: opts.idleTimeout,
    sendPingsAutomatically: true,

    upgrade: createUpgrade(opts, {
      auth: deps.auth,
      metrics,
      isDraining: deps.isDraining,
      connections: () => sockets.size,
      accept: () => newSession(rate.bucket(Date.now())),
    }),

    open(ws) {
      sockets.add(ws);
      metrics.openSockets.inc();
      send(ws, 'connected', { connectionId: ws.getUserData().id, protocol: PROTOCOL });
    },

    message: onMessage,

    drain: replays.drain,

    close(ws, code, message) {
      const session = ws.getUserData();
      session.closed = true;
      replays.closed(ws);
      sockets.delete(ws);
      metrics.openSockets.dec();
      rooms.dropped(ws);
      // uWS 20.30 closes a socket past maxBackpressure by shutting down its read side, so the
      // close arrives as 1006 with no message, exactly like a peer that vanished. The check
      // after each send and publish (rooms.ts's checkBuffers) tells the two apart.
      if (session.overLimit && code === 1006 && message.byteLength === 0) {
        metrics.backpressureCloses.inc();
        log.warn('closed a WebSocket client that could not keep up', { connectionId: session.id, maxBuffer: opts.maxBuffer });
      }
    },
  });

  app.get('/ws', answerPlainGet);

  return {
    /** Sends each committed request to its room (rooms.ts). */
    publish: rooms.publish,

    /** Tells a deleted webhook's room, then empties it (rooms.ts). */
    webhookDeleted: rooms.webhookDeleted,

    /** Sends every socket `disconnect` with the reason, then closes it with 1001 (going away). */
    close(reason: string): void {
      for (const ws of [...sockets]) closeWith(ws, 1001, reason);
    },

    get connections() {
      return sockets.size;
    },
  };
}

export type Realtime = ReturnType<typeof createRealtime>;

const MiB = 1024 * 1024;
export const hardPayloadCeiling = (max: number) => Math.max(4 * max, MiB);

/** The `ref` of a client frame, if it has a usable one, so even a rejected frame's error echoes it. */
function refOf(x: unknown): Ref {
  if (typeof x !== 'object' || x === null) return undefined;
  const ref = (x as { ref?: unknown }).ref;
  return v.is(RefSchema, ref) ? ref : undefined;
}
