import { isUtf8 } from 'node:buffer';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import * as v from 'valibot';
import { guarded, handler, issuesOf, methodNotAllowed } from './api.js';
import type { Auth } from './auth.js';
import { HttpError, httpErrorOf } from './errors.js';
import { outgoing } from './forward.js';
import { readBody, sendError, sendJson, type Exchange } from './http.js';
import type { Logger } from './log.js';
import { RequestIdSchema, webhookIdPattern, type CapturedRequest } from './protocol.js';
import type { Store } from './store.js';
import type { TemplatedApp } from './uws.js';
import type { WebhookCache } from './webhooks.js';

export interface ResendOptions {
  /** Lower-case origins a resend may reach; undefined: resend is off. */
  allow: readonly string[] | undefined;
  /** Longest wait for the target's status, headers and body excerpt. */
  timeoutMs: number;
  maxApiBodyBytes: number;
}

interface Deps {
  auth: Auth;
  store: Store;
  webhooks: WebhookCache;
  log: Logger;
}

/** The most of the target's body that is read and returned; the rest is never read. */
export const excerptBytes = 64 * 1024;

const BodySchema = v.strictObject({
  url: v.pipe(
    v.string(),
    v.maxLength(8192),
    v.check((s) => URL.canParse(s), 'url must be an absolute URL'),
    v.transform((s) => new URL(s)),
    v.check((u) => u.protocol === 'http:' || u.protocol === 'https:', 'url must be http:// or https://'),
    v.check((u) => u.username === '' && u.password === '', 'url must not carry a user name or password'),
  ),
});

export interface ResendResult {
  url: string;
  status: number;
  statusText: string;
  headers: Record<string, string>;
  /** At most `excerptBytes` of the answer's body; null when it had none. */
  body: string | null;
  bodyEncoding: 'utf8' | 'base64';
  /** Bytes of body returned. */
  size: number;
  /** The body went on past the excerpt. */
  truncated: boolean;
  durationMs: number;
}

/**
 * `POST /api/webhooks/:id/requests/:requestId/resend {"url"}`: hooky itself sends a stored request
 * to `url` and answers what came back. A server that fetches whatever URL its caller names lets
 * that caller reach anything the server can (SSRF), so it is off unless HOOKY_RESEND_ALLOW names
 * the target origins, and any other origin is refused before a byte is sent. Redirects are not
 * followed: a 3xx is answered as it is, its Location among the headers.
 */
export function registerResend(uwsApp: TemplatedApp, opts: ResendOptions, { auth, store, webhooks, log }: Deps): void {
  const app = guarded(auth, uwsApp);
  const allowed = new Set(opts.allow ?? []);
  const route = '/api/webhooks/:id/requests/:requestId/resend';

  app.post(
    route,
    handler(log, (ex, req) => {
      const id = req.getParameter(0) ?? '';
      const requestId = req.getParameter(1) ?? '';
      // A cross-site page may send a "simple" POST (text/plain, no preflight) without asking;
      // insisting on JSON makes a browser ask first, and hooky answers no preflight.
      const json = /^application\/json\s*(;|$)/i.test(req.getHeader('content-type'));
      readBody(ex, req.getHeader('content-length'), opts.maxApiBodyBytes, (body) => {
        if (!json && allowed.size > 0) return sendError(ex, new HttpError('invalid_request', 'Send the body as Content-Type: application/json'));
        resend(ex, id, requestId, body).catch((err: unknown) => sendError(ex, httpErrorOf(err, log, 'resend')));
      });
    }),
  );

  app.any(route, methodNotAllowed('POST'));

  async function resend(ex: Exchange, id: string, requestId: string, raw: Buffer): Promise<void> {
    if (allowed.size === 0) throw new HttpError('resend_disabled');
    let input: unknown;
    try {
      input = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new HttpError('invalid_request', 'The body must be JSON: {"url": "http://…"}');
    }
    const parsed = v.safeParse(BodySchema, input);
    if (!parsed.success) throw new HttpError('invalid_request', v.summarize(parsed.issues), { issues: issuesOf(parsed.issues) });
    const target = parsed.output.url;
    if (!allowed.has(target.origin.toLowerCase())) {
      throw new HttpError('forbidden_target', `${target.origin} is not one of the origins HOOKY_RESEND_ALLOW lists`, { origin: target.origin });
    }
    if (!webhookIdPattern.test(id) || !(await webhooks.read(id))) throw new HttpError('not_found', 'Webhook not found');
    const json = v.is(RequestIdSchema, requestId) ? await store.getRequest(id, requestId) : undefined;
    if (json === undefined) throw new HttpError('not_found', 'Request not found');
    const result = await send(JSON.parse(json) as CapturedRequest, target, opts.timeoutMs);
    sendJson(ex, 200, result);
  }
}

/** Sends the request and reads the answer's status, headers and at most `excerptBytes` of body. */
function send(captured: CapturedRequest, target: URL, timeoutMs: number): Promise<ResendResult> {
  const out = outgoing(captured, target);
  const url = `${target.origin}${out.path}`;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: HttpError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new HttpError('target_timeout', `${target.origin} did not answer within ${timeoutMs} ms`)), timeoutMs);
    const options = { protocol: target.protocol, hostname: target.hostname, port: target.port, method: out.method, path: out.path, headers: out.headers };
    let request: ReturnType<typeof httpRequest>;
    try {
      // node:http rather than fetch: fetch adds headers of its own and forbids some of the
      // captured ones; neither follows redirects here.
      request = (target.protocol === 'https:' ? httpsRequest : httpRequest)(options, (res) => read(res));
    } catch (err) {
      // node:http refuses a request line it cannot send (a method or path with invalid characters).
      clearTimeout(timer);
      return reject(new HttpError('invalid_request', `The stored request cannot be sent: ${(err as Error).message}`));
    }
    request.on('error', (err) => fail(new HttpError('target_unreachable', `${target.origin}: ${err.message}`)));
    request.end(out.body);

    function read(res: IncomingMessage) {
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const body = Buffer.concat(chunks, size);
        const text = utf8Prefix(body, truncated);
        resolve({
          url,
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? '',
          headers: joinHeaders(res.rawHeaders),
          body: size === 0 ? null : text !== undefined ? text : body.toString('base64'),
          bodyEncoding: size === 0 || text !== undefined ? 'utf8' : 'base64',
          size,
          truncated,
          durationMs: Math.round(performance.now() - started),
        });
        // The rest of an answer past the excerpt is not read: the connection is dropped.
        if (truncated) request.destroy();
      };
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        const room = excerptBytes - size;
        if (chunk.length > room) {
          chunks.push(chunk.subarray(0, room));
          size += room;
          truncated = true;
          return finish();
        }
        chunks.push(chunk);
        size += chunk.length;
      });
      res.on('end', finish);
      res.on('error', (err) => fail(new HttpError('target_unreachable', `${target.origin} broke off its answer: ${err.message}`)));
    }
  });
}

/** Header names lower-cased and repeats joined with ", ", as captured headers are. */
function joinHeaders(raw: readonly string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    out[name] = name in out ? `${out[name]}, ${raw[i + 1]}` : raw[i + 1]!;
  }
  return out;
}

/**
 * The body as text when it is UTF-8. An excerpt cut in the middle of a character is still text:
 * up to three bytes of an unfinished character at the cut are dropped.
 */
function utf8Prefix(body: Buffer, truncated: boolean): string | undefined {
  if (isUtf8(body)) return body.toString('utf8');
  if (!truncated) return undefined;
  for (let cut = 1; cut <= 3 && cut < body.length; cut++) {
    if (isUtf8(body.subarray(0, body.length - cut))) return body.subarray(0, body.length - cut).toString('utf8');
  }
  return undefined;
}
