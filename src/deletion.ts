import type { Sql } from 'postgres';
import * as v from 'valibot';
import { guarded, handler } from './api.js';
import type { Auth } from './auth.js';
import { HttpError } from './errors.js';
import { sendEmpty } from './http.js';
import type { Logger } from './log.js';
import { RequestIdSchema, webhookIdPattern } from './protocol.js';
import { deleteRequests } from './store.js';
import type { TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';

export interface DeletionOptions {
  /** Rows per DELETE statement when a webhook's requests are deleted all at once. */
  batch: number;
}

interface Deps {
  auth: Auth;
  sql: Sql;
  webhooks: WebhookCache;
  log: Logger;
}

/**
 * `DELETE /api/webhooks/:id/requests/:requestId` and `DELETE /api/webhooks/:id/requests`.
 * Deleting them all runs in statements of at most `batch` rows, as retention does, so no
 * statement holds a large set of row locks or a long transaction while captures go on.
 */
export function registerDeletion(uwsApp: TemplatedApp, opts: DeletionOptions, { auth, sql, webhooks, log }: Deps): void {
  const app = guarded(auth, uwsApp);
  const notFound = (what: string) => new HttpError('not_found', `${what} not found`);

  async function existing(id: string): Promise<void> {
    if (!webhookIdPattern.test(id) || !(await webhooks.find(id))) throw notFound('Webhook');
  }

  app.del(
    '/api/webhooks/:id/requests/:requestId',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      const requestId = req.getParameter(1) ?? '';
      await existing(id);
      if (!v.is(RequestIdSchema, requestId)) throw notFound('Request');
      // Its batch row stays, even emptied: a client that resumes from this very request is
      // placed by that row (store.cursorOf), so it misses nothing another writer committed
      // after it with smaller ids. One small row per deletion that empties a batch.
      const { count } = await sql`delete from requests where webhook_id = ${id} and id = ${requestId}::uuid`;
      if (count === 0) throw notFound('Request');
      sendEmpty(ex, 204);
    }),
  );

  app.del(
    '/api/webhooks/:id/requests',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      await existing(id);
      // Everything captured up to now, and nothing after: under a steady stream of captures an
      // open-ended loop would never finish. Ids are time-ordered, so "up to now" is one id.
      const [newest] = await sql<{ id: string }[]>`
        select id from requests where webhook_id = ${id} order by id desc limit 1`;
      if (newest !== undefined) {
        for (;;) {
          const count = await deleteRequests(
            sql,
            sql`select id from requests where webhook_id = ${id} and id <= ${newest.id}::uuid limit ${opts.batch}`,
          );
          // Finished even when the caller went away: a delete half done would only surprise.
          if (count < opts.batch) break;
        }
      }
      sendEmpty(ex, 204);
    }),
  );
}
