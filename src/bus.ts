import { randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';
import type { Database } from './db/connect.js';
import type { Logger } from './log.js';
import type { CapturedRow } from './store.js';

/**
 * What one hooky instance tells the others that share its database. At most once: a message
 * can be lost (a connection cut, a process that died between commit and notify), so what it
 * says is only a hint, and Postgres stays the truth (relay.ts fills every gap from it).
 */
export interface Bus {
  /** A batch committed: the position each webhook reached (undefined: not known, look it up). */
  committed(reached: ReadonlyMap<string, number | undefined>, rows?: readonly CapturedRow[]): void;
  created(webhookId: string): void;
  deleted(webhookId: string): void;
  /** A bus that routes by room (NATS) hears a webhook only between these: its room has members here. */
  watch?(webhookId: string): void;
  unwatch?(webhookId: string): void;
  /** Stops listening. Safe to call twice. */
  close(): Promise<void>;
}

/** What the other instances said. Messages from this instance never come back. */
export interface BusHandlers {
  /** `rows`: the batch's rows of that webhook, when the bus carried them (NATS, small bodies). */
  committed(webhookId: string, position: number | undefined, rows?: readonly CapturedRow[]): void;
  created(webhookId: string): void;
  deleted(webhookId: string): void;
  /** The bus was cut off and is back: anything may have been missed meanwhile. */
  resumed(): void;
}

const channel = 'hooky';
// NOTIFY refuses a payload of 8000 bytes or more; a batch over many webhooks is split.
const maxPayload = 7900;
// Between attempts to listen again while Postgres is away.
const relistenMs = 500;
// Every instance says it is there this often; one not heard from for `aloneAfterMs` is gone.
const heartbeatMs = 1000;
const aloneAfterMs = 3500;

/**
 * The default bus: PostgreSQL LISTEN/NOTIFY on hooky's own database, nothing to configure.
 *
 * A message is one line of words: `c <instance> <webhook> <position|?>…` (a batch committed),
 * `n <instance> <webhook>` (created), `d <instance> <webhook>` (deleted), `h <instance>` (a
 * heartbeat, every second and as soon as LISTEN is in place). Webhook ids hold no spaces
 * (protocol.ts). Never a body: only positions travel, and an instance reads the rows from
 * Postgres for the rooms it serves.
 *
 * An instance that has heard no other for a few seconds is alone and sends no NOTIFY per batch:
 * one hooky process pays one heartbeat a second for the bus. A new instance's first heartbeat
 * goes out before it serves anyone; batches committed before the others hear it reach it
 * through its periodic check (relay.ts).
 *
 * NOTIFY is sent after the commit, as a statement of its own on the pool: the lock that NOTIFY
 * takes at commit, one for the whole cluster, is never held by the insert's transaction. LISTEN
 * holds a connection of its own (`hooky bus` in pg_stat_activity); when that connection closes it
 * is opened again until it succeeds, and `resumed` is called.
 */
export async function createNotifyBus(db: Database, handlers: BusHandlers, log: Logger): Promise<Bus> {
  const instance = randomBytes(6).toString('base64url');
  const sql = db.sql;
  let closed = false;
  let listening = false;
  let retry: NodeJS.Timeout | undefined;
  const listener: Sql = db.dedicated(`bus ${instance}`, {
    // Held for good: postgres.js would otherwise close it after 30–60 min and lose the LISTEN.
    max_lifetime: null,
    onnotify: (_channel: string, payload: string) => receive(payload),
    onclose: () => {
      if (closed) return;
      if (listening) log.warn('bus: LISTEN connection lost; listening again', {});
      listening = false;
      again();
    },
  });

  let othersUntil = 0;

  function receive(payload: string) {
    const words = payload.split(' ');
    if (words[1] === instance) return;
    othersUntil = Date.now() + aloneAfterMs;
    try {
      switch (words[0]) {
        case 'c':
          for (let i = 2; i + 1 < words.length; i += 2) {
            handlers.committed(words[i]!, words[i + 1] === '?' ? undefined : Number(words[i + 1]));
          }
          return;
        case 'n':
          return handlers.created(words[2]!);
        case 'd':
          return handlers.deleted(words[2]!);
      }
    } catch (err) {
      log.error('bus: handling a message failed', { payload: payload.slice(0, 200), err });
    }
  }

  let resumes = 0;
  let failing = false;
  async function listen() {
    retry = undefined;
    try {
      await listener.unsafe(`listen ${channel}`);
    } catch (err) {
      // Said once per outage, not every attempt.
      if (!closed && !failing) log.warn('bus: LISTEN failed; trying again every 500 ms', { err });
      failing = true;
      return again();
    }
    failing = false;
    if (closed) return;
    listening = true;
    beat();
    if (resumes++ > 0) {
      log.info('bus: listening again; filling what was missed from Postgres', {});
      handlers.resumed();
    }
  }

  function again() {
    if (closed || retry !== undefined) return;
    retry = setTimeout(listen, relistenMs);
    retry.unref();
  }

  function notify(messages: string[]) {
    if (closed || messages.length === 0) return;
    const sent = messages.length === 1 ? sql`select pg_notify(${channel}, ${messages[0]!})` : sql`select pg_notify(${channel}, m) from unnest(${messages}::text[]) m`;
    // Lost on failure, like any message of this bus: the others' periodic check heals it.
    sent.catch((err: unknown) => log.warn('bus: NOTIFY failed', { err }));
  }

  const beat = () => notify([`h ${instance}`]);
  const heartbeat = setInterval(beat, heartbeatMs);
  heartbeat.unref();

  // The first LISTEN is in place before the instance serves anyone (or is being retried).
  await listen();
  let closing: Promise<void> | undefined;

  return {
    committed(reached) {
      // While not listening it cannot know who else is there: it tells them.
      if (listening && Date.now() > othersUntil) return;
      const head = `c ${instance}`;
      const messages: string[] = [];
      let line = head;
      for (const [webhookId, position] of reached) {
        const word = ` ${webhookId} ${position ?? '?'}`;
        if (line.length + word.length > maxPayload) {
          messages.push(line);
          line = head;
        }
        line += word;
      }
      if (line !== head) messages.push(line);
      notify(messages);
    },
    created: (webhookId) => notify([`n ${instance} ${webhookId}`]),
    deleted: (webhookId) => notify([`d ${instance} ${webhookId}`]),
    close: () =>
      (closing ??= (async () => {
        closed = true;
        clearTimeout(retry);
        clearInterval(heartbeat);
        await listener.end({ timeout: 1 });
      })()),
  };
}
