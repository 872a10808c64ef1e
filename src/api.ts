import * as v from 'valibot';
import type { Auth } from './auth.js';
import { HttpError } from './errors.js';
import { errorBody, exchange, readBody, send, sendEmpty, sendError, sendJson, type Exchange, type Headers } from './http.js';
import { newWebhookId } from './ids.js';
import type { Logger } from './log.js';
import { RequestIdSchema, WebhookIdSchema, requestIdPattern, webhookIdPattern } from './protocol.js';
import type { Search } from './search.js';
import { ResponseSchema, type Store, type Webhook } from './store.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';

export interface ApiOptions {
  maxApiBodyBytes: number;
  /** Base of a webhook's capture `url`, without a trailing slash. */
  publicUrl: () => string;
}

interface Deps {
  auth: Auth;
  store: Store;
  webhooks: WebhookCache;
  log: Logger;
  onDeleted: (webhookId: string) => void;
  search: Search;
}

const CreateSchema = v.strictObject({
  id: v.optional(WebhookIdSchema),
  response: v.optional(ResponseSchema),
});

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
    const fail = (err: unknown) => {
      if (err instanceof HttpError) return sendError(ex, err);
      const unreachable = isConnectionError(err);
      log.error(unreachable ? 'storage unavailable' : 'request failed', { err });
      sendError(ex, new HttpError(unreachable ? 'storage_unavailable' : 'internal'));
    };
    try {
      fn(ex, req)?.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
}

export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(ECONN|ENOTFOUND|ETIMEDOUT|EPIPE|CONNECT_TIMEOUT|CONNECTION_|57P0)/.test(code);
}

export const methodNotAllowed = (allow: string) => (res: HttpResponse) =>
  sendError({ res, done: false }, new HttpError('method_not_allowed', `Allowed: ${allow}`, { allow }));

// RFC 9110 §11.6.1: a 401 names the scheme the client should use.
const unauthorizedHeaders: Headers = { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="hooky"' };
const unauthorizedBody = errorBody('unauthorized');

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
          send({ res, done: false }, 401, unauthorizedBody, unauthorizedHeaders);
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
  const { store, webhooks, log } = deps;
  const app = guarded(deps.auth, uwsApp);
  const notFound = (what: string) => new HttpError('not_found', `${what} not found`);

  const view = (w: Webhook) => ({ id: w.id, url: `${opts.publicUrl()}/h/${w.id}`, createdAt: w.createdAt, response: w.response });

  async function existing(id: string): Promise<Webhook> {
    const w = webhookIdPattern.test(id) ? await webhooks.find(id) : undefined;
    if (!w) throw notFound('Webhook');
    return w;
  }

  app.post(
    '/api/webhooks',
    handler(log, (ex, req) => {
      readBody(ex, req.getHeader('content-length'), opts.maxApiBodyBytes, (body) => {
        create(ex, body).catch((err: unknown) => {
          log.error('create webhook failed', { err });
          sendError(ex, new HttpError(isConnectionError(err) ? 'storage_unavailable' : 'internal'));
        });
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
    const parsed = v.safeParse(CreateSchema, input);
    if (!parsed.success) {
      return sendError(ex, new HttpError('invalid_request', v.summarize(parsed.issues), { issues: issuesOf(parsed.issues) }));
    }
    const id = parsed.output.id ?? newWebhookId();
    const created = await store.createWebhook(id, parsed.output.response ?? null);
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

  app.get(
    '/api/webhooks/:id/requests',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      const query = v.safeParse(ListQuerySchema, {
        limit: req.getQuery('limit') || undefined,
        before: req.getQuery('before') || undefined,
      });
      if (!query.success) throw new HttpError('invalid_request', v.summarize(query.issues), { issues: issuesOf(query.issues) });
      const filter = deps.search.parse(req.getQuery() ?? '');
      await existing(id);
      const page = filter
        ? await deps.search.page(id, filter, query.output.limit, query.output.before)
        : await store.listRequests(id, query.output.limit, query.output.before);
      // Payloads are stored as JSON text and sent as they are, never parsed and re-serialised.
      send(ex, 200, `{"requests":[${page.json.join(',')}],"next":${JSON.stringify(page.next)}}`);
    }),
  );

  app.any('/api/webhooks/:id/requests', methodNotAllowed('GET, DELETE'));

  app.get(
    '/api/webhooks/:id/requests/:requestId',
    handler(log, async (ex, req) => {
      const id = req.getParameter(0) ?? '';
      const requestId = req.getParameter(1) ?? '';
      await existing(id);
      const json = v.is(RequestIdSchema, requestId) ? await store.getRequest(id, requestId) : undefined;
      if (json === undefined) throw notFound('Request');
      send(ex, 200, json);
    }),
  );

  app.any('/api/webhooks/:id/requests/:requestId', methodNotAllowed('GET, DELETE'));

  app.any('/api/*', (res) => sendError({ res, done: false }, notFound('Route')));
}

export function issuesOf(issues: readonly v.BaseIssue<unknown>[]) {
  return issues.map((i) => ({ path: v.getDotPath(i), message: i.message }));
}
