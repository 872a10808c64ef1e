import type { Store, Webhook } from './store.js';

const maxEntries = 100_000;

/**
 * Known webhooks, cached so the capture hot path rarely asks Postgres whether an id exists.
 * Only hits are cached: a webhook created by another instance is found on first use. Deleting
 * through `forget` keeps this instance from accepting captures for a webhook that is gone.
 */
export function createWebhookCache(store: Store) {
  const known = new Map<string, Webhook>();

  const remember = (w: Webhook) => {
    if (known.size >= maxEntries) known.delete(known.keys().next().value!);
    known.set(w.id, w);
  };

  return {
    /** The webhook, synchronously when cached. */
    find(id: string): Webhook | Promise<Webhook | undefined> {
      return (
        known.get(id) ??
        store.getWebhook(id).then((w) => {
          if (w) remember(w);
          return w;
        })
      );
    },
    remember,
    forget(id: string): void {
      known.delete(id);
    },
  };
}

export type WebhookCache = ReturnType<typeof createWebhookCache>;
