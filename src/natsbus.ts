import { randomBytes } from 'node:crypto';
import { connect, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Bus, BusHandlers } from './bus.js';
import type { Logger } from './log.js';
import { requestIdPattern, webhookIdPattern } from './protocol.js';
import type { CapturedRow } from './store.js';

export interface NatsBusOptions {
  servers: readonly string[];
  /** First tokens of every subject, so that deployments sharing a NATS never hear each other. */
  prefix: string;
}

// A request whose JSON passes this travels by reference: its batch's message names the position
// only, and the instances that serve its room read the rows from Postgres.
export const inlineMaxBytes = 64 * 1024; // 64 KiB
// Between attempts to reach NATS again while it is away.
const reconnectMs = 500;
// A connection that answers no ping for two of these is taken as lost (a cable cut sends no FIN).
const pingMs = 5000;
// Every instance says which rooms it serves this often; a room not said again within
// `servedForMs` is taken as served nowhere else, and its batches are no longer published.
const servingMs = 2000;
const servedForMs = 5000;
// A `w` message names at most this many bytes of webhook ids (well below any max_payload).
const servingMaxBytes = 32 * 1024;

/**
 * The bus for many hosts: NATS core (`HOOKY_NATS_URL`). At most once, like every bus: Postgres
 * stays the truth, and the relay fills any gap from it.
 *
 * - One subject per webhook, `<prefix>.webhook.<id>` (webhook ids are `[A-Za-z0-9_-]`, valid
 *   subject tokens), subscribed only while its room has members here (`watch`/`unwatch`): the
 *   NATS server forwards a batch only to the instances that serve its room.
 * - A committed batch is published once per webhook it holds, with its rows: the receivers
 *   publish them to their rooms without a round trip to Postgres. The message is a head line,
 *   `<position> <id> <length> <id> <length>…`, then the rows' JSON one after the other (lengths
 *   in UTF-16 units, as JavaScript slices them). A batch holding a request past
 *   `inlineMaxBytes`, or larger than the server's max_payload, goes by reference: the head line
 *   `<position>` alone. A position not known (`?`) goes by reference too.
 * - Created and deleted travel on `<prefix>.control` as `n <id>` and `d <id>`.
 * - A batch is published only for the webhooks whose rooms another instance serves: each says
 *   so on the control subject, `w <id> <id>…`, when a room gets its first member there and
 *   every `servingMs` for all its rooms; a starting or reconnected instance asks (`q`) and the
 *   others answer at once. A room not said again within `servedForMs` is served nowhere else.
 *   An instance alone, or whose rooms nobody else serves, publishes nothing per batch. A batch
 *   committed before its publisher heard of a new room reaches that room by the relay's fill
 *   (the next batch's position jumps) or its periodic check, as any lost message does.
 * - The connection is made with `noEcho`: an instance never hears its own messages.
 * - While NATS is away nothing is published (the client would buffer without bound, and drops
 *   that buffer when it reconnects anyway). When it is back, the client subscribes again; once
 *   the server has those subscriptions (a flush), `resumed` makes the relay read every room
 *   again from Postgres.
 */
export async function createNatsBus(opts: NatsBusOptions, handlers: BusHandlers, log: Logger): Promise<Bus> {
  const instance = randomBytes(6).toString('base64url');
  const webhookSubject = `${opts.prefix}.webhook.`;
  const controlSubject = `${opts.prefix}.control`;
  let nc: NatsConnection;
  try {
    nc = await connect({
      ...credentials(opts.servers),
      servers: opts.servers.map(withoutCredentials),
      name: `hooky ${instance}`,
      noEcho: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: reconnectMs,
      pingInterval: pingMs,
      maxPingOut: 2,
    });
  } catch (err) {
    throw new Error(`Could not connect to NATS at ${opts.servers.map(withoutCredentials).join(',')} (HOOKY_NATS_URL): ${(err as Error).message}`, { cause: err });
  }
  let closed = false;
  let up = true;
  const rooms = new Map<string, Subscription>();
  // Rooms other instances serve: webhook id → until when (ms), as they last said.
  const servedElsewhere = new Map<string, number>();

  function guarded(what: string, fn: () => void) {
    try {
      fn();
    } catch (err) {
      log.error(`bus: handling ${what} failed`, { err });
    }
  }

  function onWebhook(err: Error | null, msg: Msg) {
    if (err !== null) return log.warn('bus: NATS subscription error', { err });
    const webhookId = msg.subject.slice(webhookSubject.length);
    const text = msg.string();
    const lineEnd = text.indexOf('\n');
    const head = (lineEnd < 0 ? text : text.slice(0, lineEnd)).split(' ');
    const position = /^\d+$/.test(head[0]!) ? Number(head[0]) : undefined;
    const rows = position === undefined || lineEnd < 0 ? undefined : rowsOf(webhookId, head, text, lineEnd + 1);
    guarded('a batch', () => handlers.committed(webhookId, position, rows));
  }

  /** The rows a message carries; undefined, so read from Postgres, when it is not well formed. */
  function rowsOf(webhookId: string, head: string[], text: string, start: number): CapturedRow[] | undefined {
    const rows: CapturedRow[] = [];
    let at = start;
    for (let i = 1; i + 1 < head.length; i += 2) {
      const id = head[i]!;
      const length = Number(head[i + 1]);
      if (!requestIdPattern.test(id) || !Number.isSafeInteger(length) || length < 2 || at + length > text.length) break;
      // An object, not checked further: the bus is trusted like Postgres (docs/scaling.md).
      if (text.charCodeAt(at) !== 0x7b || text.charCodeAt(at + length - 1) !== 0x7d) break;
      rows.push({ id, webhookId, json: text.slice(at, at + length) });
      at += length;
    }
    if (rows.length === 0 || at !== text.length || rows.length * 2 + 1 !== head.length) {
      log.warn('bus: a NATS message that is not a well-formed batch; reading it from Postgres', { webhookId, bytes: text.length });
      return undefined;
    }
    return rows;
  }

  function onControl(err: Error | null, msg: Msg) {
    if (err !== null) return log.warn('bus: NATS subscription error', { err });
    const [kind, ...words] = msg.string().split(' ');
    if (kind === 'q') return sayServing();
    if (kind === 'w') {
      const until = Date.now() + servedForMs;
      for (const webhookId of words) if (webhookIdPattern.test(webhookId)) servedElsewhere.set(webhookId, until);
      return;
    }
    const webhookId = words[0];
    if (webhookId === undefined || !webhookIdPattern.test(webhookId)) return;
    if (kind === 'n') guarded('a creation', () => handlers.created(webhookId));
    else if (kind === 'd') guarded('a deletion', () => handlers.deleted(webhookId));
  }

  /** Tells the others every room served here, in messages of at most `servingMaxBytes`. */
  function sayServing() {
    let line = 'w';
    for (const webhookId of rooms.keys()) {
      if (line.length + webhookId.length + 1 > servingMaxBytes) {
        publish(controlSubject, line);
        line = 'w';
      }
      line += ` ${webhookId}`;
    }
    if (line !== 'w') publish(controlSubject, line);
  }

  const serving = setInterval(() => {
    sayServing();
    // What nobody said again is forgotten: the map holds the rooms served elsewhere, no more.
    const now = Date.now();
    for (const [webhookId, until] of servedElsewhere) if (until < now) servedElsewhere.delete(webhookId);
  }, servingMs);
  serving.unref();

  nc.subscribe(controlSubject, { callback: onControl });
  // Whoever serves rooms already says so now, not in up to `servingMs`.
  publish(controlSubject, 'q');

  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') {
        if (up && !closed) log.warn('bus: NATS connection lost; reconnecting every 500 ms', { server: status.server });
        up = false;
      } else if (status.type === 'reconnect') {
        up = true;
        log.info('bus: NATS is back; filling what was missed from Postgres', { server: status.server });
        // The subscriptions are sent again before this status; the flush's round trip means the
        // server holds them, so every batch committed after the fill's read reaches us.
        const resumed = () => {
          guarded('a reconnect', () => handlers.resumed());
          // What others said may have been lost meanwhile: ask again, and say again.
          publish(controlSubject, 'q');
          sayServing();
        };
        nc.flush().then(resumed, resumed);
      }
    }
  })().catch((err: unknown) => log.error('bus: reading NATS status failed', { err }));
  void nc.closed().then((err) => {
    // Only when the client gave up (credentials refused on a reconnect): no bus from now on.
    if (!closed) log.error('bus: NATS connection closed for good; other instances\' captures now arrive through the once-a-second check', { err });
  });

  /** Called from the writer's callback: whatever goes wrong here is logged, never thrown. */
  function publish(subject: string, message: string | (() => string | Uint8Array)) {
    if (closed || !up) return;
    try {
      nc.publish(subject, typeof message === 'string' ? message : message());
    } catch (err) {
      // Lost, like any message of this bus: the others' periodic check heals it.
      log.warn('bus: NATS publish failed', { subject, err });
    }
  }

  /** One webhook's rows of a batch as one message, or its position alone (by reference). */
  function message(position: number | undefined, rows: readonly CapturedRow[] | undefined): string | Uint8Array {
    if (position === undefined) return '?';
    if (rows === undefined || rows.some(tooLarge)) return String(position);
    let head = String(position);
    let body = '';
    for (const row of rows) {
      head += ` ${row.id} ${row.json.length}`;
      body += row.json;
    }
    const bytes = Buffer.from(`${head}\n${body}`);
    // No info while a reconnect is under way: by reference, it is not sent anyway.
    return bytes.length > (nc.info?.max_payload ?? 0) ? String(position) : bytes;
  }

  let closing: Promise<void> | undefined;
  return {
    committed(reached, rows) {
      if (closed || !up) return;
      const byWebhook = new Map<string, CapturedRow[]>();
      for (const row of rows ?? []) {
        const list = byWebhook.get(row.webhookId);
        if (list === undefined) byWebhook.set(row.webhookId, [row]);
        else list.push(row);
      }
      const now = Date.now();
      for (const [webhookId, position] of reached) {
        if ((servedElsewhere.get(webhookId) ?? 0) < now) continue;
        publish(webhookSubject + webhookId, () => message(position, byWebhook.get(webhookId)));
      }
    },
    created: (webhookId) => publish(controlSubject, `n ${webhookId}`),
    deleted: (webhookId) => publish(controlSubject, `d ${webhookId}`),
    watch(webhookId) {
      if (closed || rooms.has(webhookId)) return;
      rooms.set(webhookId, nc.subscribe(webhookSubject + webhookId, { callback: onWebhook }));
      // Before the relay reads the room's cursor: the others publish its batches from about now.
      publish(controlSubject, `w ${webhookId}`);
    },
    unwatch(webhookId) {
      rooms.get(webhookId)?.unsubscribe();
      rooms.delete(webhookId);
    },
    close: () =>
      (closing ??= (async () => {
        closed = true;
        clearInterval(serving);
        rooms.clear();
        await nc.close();
      })()),
  };
}

/** Over `inlineMaxBytes` of UTF-8; a string's byte length is between its length and three times it. */
const tooLarge = (row: CapturedRow) => row.json.length > inlineMaxBytes || (row.json.length * 3 > inlineMaxBytes && Buffer.byteLength(row.json) > inlineMaxBytes);

/**
 * The client takes credentials as options, not in the URL: `nats://user:pass@host` gives a user
 * and password, `nats://token@host` a token (the NATS convention), from the first URL with any.
 */
function credentials(servers: readonly string[]): { user: string; pass: string } | { token: string } | Record<string, never> {
  for (const server of servers) {
    const url = new URL(server);
    const user = decodeURIComponent(url.username);
    if (user === '') continue;
    return url.password === '' ? { token: user } : { user, pass: decodeURIComponent(url.password) };
  }
  return {};
}

function withoutCredentials(server: string): string {
  const url = new URL(server);
  return `${url.protocol}//${url.host}`;
}
