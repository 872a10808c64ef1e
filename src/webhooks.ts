import type { Store, Webhook } from './store.js';

const maxEntries = 100_000;
const maxMisses = 10_000;
// How long "no such webhook" is believed. A webhook created through this instance is known at
// once; one created through another instance sharing the database is announced on the bus
// (which forgets the miss), and can 404 here for this long only if that notice is lost.
const missTtlMs = 1000;

/**
 * Known webhooks, cached so the capture hot path rarely asks Postgres whether an id exists.
 * Misses are remembered briefly and concurrent lookups of one id share a query, so a flood of
 * captures for unknown ids costs Postgres about one query per id per second (joins, which the
 * message rate limit bounds, ask again past a remembered miss: see `read`).
 * Deleting through `forget` keeps this instance from accepting captures for a webhook that is gone;
 * `forget` also ends a remembered miss, which the bus does when another instance creates the id.
 */
export function createWebhookCache(store: Store) {
  const known = new Map<string, Webhook>();
  const missed = new Map<string, number>(); // id → when the miss stops being believed
  const inFlight = new Map<string, Promise<Webhook | undefined>>();

  const remember = (w: Webhook) => {
    missed.delete(w.id);
    if (known.size >= maxEntries) known.delete(known.keys().next().value!);
    known.set(w.id, w);
  };

  const lookup = (id: string) => {
    const query = store.getWebhook(id).then(
      (w) => {
        inFlight.delete(id);
        if (w) remember(w);
        else {
          if (missed.size >= maxMisses) missed.delete(missed.keys().next().value!);
          missed.set(id, Date.now() + missTtlMs);
        }
        return w;
      },
      (err: unknown) => {
        inFlight.delete(id);
        throw err;
      },
    );
    inFlight.set(id, query);
    return query;
  };

  return {
    /** The webhook, synchronously when cached; undefined when it does not exist. */
    find(id: string): Webhook | undefined | Promise<Webhook | undefined> {
      const hit = known.get(id);
      if (hit) return hit;
      const until = missed.get(id);
      if (until !== undefined) {
        if (until > Date.now()) return undefined;
        missed.delete(id);
      }
      return inFlight.get(id) ?? lookup(id);
    },
    /**
     * The webhook as Postgres has it now, past the cache: for REST reads and for a join the cache
     * would refuse. Another instance's create or delete is announced on the bus, a few
     * milliseconds after its answer; a client that was answered there and asks here at once
     * must already see it. (Captures keep `find`: a stale entry costs them nothing, as the
     * INSERT finds no webhook row and answers 404, and a miss answered 404 is never stored.)
     * It leaves the cache as it is: a read that began before a local create or delete
     * committed could otherwise put back what that change replaced.
     */
    read(id: string): Promise<Webhook | undefined> {
      return store.getWebhook(id);
    },
    remember,
    forget(id: string): void {
      known.delete(id);
      missed.delete(id);
    },
  };
}

export type WebhookCache = ReturnType<typeof createWebhookCache>;
