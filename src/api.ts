import * as v from 'valibot';
import type { Auth } from './auth.js';
import type { Budget, Hold } from './budget.js';
import { HttpError, httpErrorOf } from './errors.js';
import { exchange, queryParams, readBody, sendEmpty, sendError, sendJson, sendStreamed, type Exchange, type Headers } from './http.js';
import { newWebhookId } from './ids.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { CreateWebhookSchema, RequestIdSchema, requestIdPattern, webhookIdPattern } from './protocol.js';
import type { Search } from './search.js';
import type { Store, Webhook } from './store.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';

export interface ApiOptions {
  maxApiBodyBytes: number;
  /** Payload bytes per page of `GET …/requests`; a page holds at least one request. */
  maxPageBytes: number;
  /** Webhooks that may exist; 0 = no limit. */
  maxWebhooks: number;
  /** Base of a webhook's capture `url`, without a trailing slash. */
  publicUrl: () => string;
}

interface Deps {
  auth: Auth;
  store: Store;
  webhooks: WebhookCache;
  log: Logger;
  metrics: Metrics;
  /** Payload bytes held for listings and replays, server-wide (HOOKY_MAX_READ_BYTES). */
  reads: Budget;
  onDeleted: (webhookId: string) => void;
  search: Search;
}

/** The paging parameters of a listing's query string (ListQuerySchema's keys). */
export const pageParams = ['limit', 'before'] as const;

export const ListQuerySchema = v.object({
  limit: v.pipe(
    v.optional(v.string(), '50'),
    v.regex(/^\d{1,4}$/, 'limit must be a whole number from 1 to 1000'),
    v.transform(Number),
    v.minValue(1, 'limit must be a whole number from 1 to 1000'),
    v.maxValue(1000, 'limit must be a whole number from 1 to 1000'),
  ),
  before: v.optional(v.pipe(v.string(), v.regex(requestIdPattern, 'before must be a request id'))),
});

/**
 * An async handler over one exchange: an HttpError becomes its status and code, anything else is
 * a bug or broken infrastructure, logged once and answered 500 (503 when Postgres is unreachable).
 */
export function handler(log: Logger, fn: (ex: Exchange, req: HttpRequest) => Promise<void> | void) {
  return (res: HttpResponse, req: HttpRequest) => {
    const ex = exchange(res);
    const fail = (err: unknown) => sendError(ex, httpErrorOf(err, log, 'request'));
    try {
      fn(ex, req)?.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
}

// RFC 9110 §15.5.6: a 405 lists the methods the route has in `Allow`.
export const methodNotAllowed = (allow: string) => {
  const err = new HttpError('method_not_allowed', `Allowed: ${allow}`, { allow }, { allow });
  return (res: HttpResponse) => sendError({ res, done: false }, err);
};

const unauthorized = new HttpError('unauthorized');

type Route = (res: HttpResponse, req: HttpRequest) => void;

/**
 * With HOOKY_API_TOKEN set, every /api route (unknown ones too, so they reveal nothing) answers
 * 401 before it reads a byte of the body or touches Postgres.
 */
export function guarded(auth: Auth, app: TemplatedApp) {
  const guard = (route: Route): Route =>
    !auth.required
      ? route
      : (res, req) => {
          if (auth.allowsRequest(req.getHeader('authorization'))) return route(res, req);
          sendError({ res, done: false }, unauthorized);
        };
  return {
    get: (pattern: string, route: Route) => app.get(pattern, guard(route)),
    post: (pattern: string, route: Route) => app.post(pattern, guard(route)),
    del: (pattern: string, route: Route) => app.del(pattern, guard(route)),
    any: (pattern: string, route: Route) => app.any(pattern, guard(route)),
  };
}

/** The REST API of the contract under /api. */
export function registerApi(uwsApp: TemplatedApp, opts: ApiOptions, deps: Deps): void {
  const { store, webhooks, log, metrics, reads } = deps;
  const app = guarded(deps.auth, uwsApp);
  const notFound = (what: string) => new HttpError('not_found', `${what} not found`);

  const view = (w: Webhook) => ({ id: w.id, url: `${opts.publicUrl()}/h/${w.id}`, createdAt: w.createdAt, response: w.response });

  async function existing(id: string): Promise<Webhook> {
    const w = webhookIdPattern.test(id) ? await webhooks.read(id) : undefined;
    if (!w) throw notFound('Webhook');
    return w;
  }

  app.post(
    '/api/webhooks',
    handler(log, (ex, req) => {
      readBody(ex, req.getHeader('content-length'), opts.maxApiBodyBytes, (body) => {
        create(ex, body).catch((err: unknown) => sendError(ex, httpErrorOf(err, log, 'create webhook')));
      });
    }),
  );

  async function create(ex: Exchange, body: Buffer) {
    let input: unknown = {};
    if (body.length > 0) {
      try {
        input = JSON.parse(body.toString('utf8'));
      } catch {
        return sendError(ex, new HttpError('invalid_request', 'The body is not valid JSON'));
      }
    }
    const parsed = v.safeParse(CreateWebhookSchema, input);
    if (!parsed.success) {
      return sendError(ex, new HttpError('invalid_request', v.summarize(parsed.issues), { issues: issuesOf(parsed.issues) }));
    }
    const id = parsed.output.id ?? newWebhookId();
    const response = parsed.output.response ?? null;
    const created = opts.maxWebhooks > 0 ? await store.createWebhookWithin(opts.maxWebhooks, id, response) : await store.createWebhook(id, response);
    if (created === 'full') {
      return sendError(ex, new HttpError('too_many_webhooks', `The server holds ${opts.maxWebhooks} webhooks, its limit (HOOKY_MAX_WEBHOOKS); delete one first`));
    }
    if (!created) return sendError(ex, new HttpError('conflict', `A webhook with id "${id}" already exists`));
    webhooks.remember(created);
    const body201 = view(created);
    sendJson(ex, 201, body201, { location: `/api/webhooks/${id}` });
  }

  app.any('/api/webhooks', methodNotAllowed('GET, POST'));

  app.get(
    '/api/webhooks/:id',
    handler(log, async (ex, req) => {
      sendJson(ex, 200, view(await existing(req.getParameter(0) ?? '')));
    }),
  );

  app.del(
    '/api/webhooks/:id',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      if (!webhookIdPattern.test(id) || !(await store.deleteWebhook(id))) throw notFound('Webhook');
      webhooks.forget(id);
      deps.onDeleted(id);
      sendEmpty(ex, 204);
    }),
  );

  app.any('/api/webhooks/:id', methodNotAllowed('GET, DELETE'));

  /**
   * Holds `bytes` of the read budget for an answer about to be fetched, or refuses with 503:
   * the bytes of every page being fetched or sent, REST and replays, stay under one ceiling.
   */
  function held(bytes: number): Hold {
    const hold = reads.hold();
    if (hold.take(bytes)) return hold;
    metrics.readRefusals.inc();
    throw new HttpError('overloaded', 'The server is sending as many stored requests as it may at once; retry later');
  }

  /** Sends a stored answer paced by the client's reading; the hold is given back once it is written or the client is gone. */
  function sendHeld(ex: Exchange, body: Buffer, hold: Hold) {
    sendStreamed(ex, 200, body, jsonHeaders, hold.release);
  }

  app.get(
    '/api/webhooks/:id/requests',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      const query = v.safeParse(ListQuerySchema, queryParams(req.getQuery() ?? '', pageParams));
      if (!query.success) throw new HttpError('invalid_request', v.summarize(query.issues), { issues: issuesOf(query.issues) });
      const filter = deps.search.parse(req.getQuery() ?? '');
      await existing(id);
      // A page ends at `limit` rows or `maxPageBytes` of payload, whichever comes first: its
      // bytes are held from the budget before a payload is fetched.
      let page: { ids: string[]; bytes: number; next: string | null };
      if (filter) page = await deps.search.page(id, filter, query.output.limit, query.output.before, opts.maxPageBytes);
      else {
        const p = await store.pageOf(id, query.output.before, query.output.limit, opts.maxPageBytes);
        page = { ids: p.ids, bytes: p.bytes, next: p.more ? p.ids[p.ids.length - 1]! : null };
      }
      if (ex.done) return;
      const hold = held(page.bytes);
      try {
        const json = await store.payloadsOf(id, page.ids);
        sendHeld(ex, pageBody(json, page.next), hold);
      } catch (err) {
        hold.release();
        throw err;
      }
    }),
  );

  app.any('/api/webhooks/:id/requests', methodNotAllowed('GET, DELETE'));

  app.get(
    '/api/webhooks/:id/requests/:requestId',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      const requestId = req.getParameter(1) ?? '';
      await existing(id);
      const bytes = v.is(RequestIdSchema, requestId) ? await store.sizeOf(id, requestId) : undefined;
      if (bytes === undefined) throw notFound('Request');
      if (ex.done) return;
      const hold = held(bytes);
      try {
        const json = await store.getRequest(id, requestId);
        if (json === undefined) throw notFound('Request');
        sendHeld(ex, Buffer.from(json), hold);
      } catch (err) {
        hold.release();
        throw err;
      }
    }),
  );

  app.any('/api/webhooks/:id/requests/:requestId', methodNotAllowed('GET, DELETE'));

  app.any('/api/*', (res) => sendError({ res, done: false }, notFound('Route')));
}

const jsonHeaders: Headers = { 'content-type': 'application/json' };

/**
 * `{"requests":[…],"next":…}` written straight into one Buffer: payloads are stored as JSON text
 * and sent as they are, never parsed and re-serialised, and never joined into a string first
 * (a page is up to HOOKY_MAX_PAGE_BYTES, or one request of any size).
 */
function pageBody(json: readonly string[], next: string | null): Buffer {
  const head = '{"requests":[';
  const tail = `],"next":${JSON.stringify(next)}}`;
  let size = head.length + tail.length + Math.max(0, json.length - 1);
  for (const j of json) size += Buffer.byteLength(j);
  const buf = Buffer.allocUnsafe(size);
  let at = buf.write(head, 0, 'latin1');
  for (let i = 0; i < json.length; i++) {
    if (i > 0) at += buf.write(',', at, 'latin1');
    at += buf.write(json[i]!, at);
  }
  buf.write(tail, at);
  return buf;
}

export function issuesOf(issues: readonly v.BaseIssue<unknown>[]) {
  return issues.map((i) => ({ path: v.getDotPath(i), message: i.message }));
}
