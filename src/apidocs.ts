/**
 * The machine-readable API docs: `docs/openapi.json` (OpenAPI 3.1, every HTTP route) and
 * `docs/asyncapi.json` (AsyncAPI 3.0, `/ws` and every event), written from the valibot schemas of
 * protocol.ts and the error table of errors.ts by `npm run docs`. test/apidocs.test.ts fails when
 * the files are stale, when a route the server registers or an event it speaks is missing here.
 *
 * It lives in src/ because it is a view of src/'s own tables, typechecked with them; the server
 * never imports it, and its one dependency (@valibot/to-json-schema) is a devDependency. It is
 * longer than a module should be because most of it is data: the description of every route.
 */
import { writeFileSync } from 'node:fs';
import { toJsonSchemaDefs } from '@valibot/to-json-schema';
import type * as v from 'valibot';
import { httpErrors, type HttpErrorCode } from './errors.js';
import * as p from './protocol.js';

type Json = Record<string, unknown>;

/** The schemas both documents share, by the name they are referenced with. */
const schemas = {
  CapturedRequest: p.CapturedRequestSchema,
  WebhookResponse: p.WebhookResponseSchema,
  CreateWebhook: p.CreateWebhookSchema,
  Webhook: p.WebhookSchema,
  RequestPage: p.RequestPageSchema,
  WebhookList: p.WebhookListSchema,
  ResendBody: p.ResendBodySchema,
  ResendResult: p.ResendResultSchema,
  CaptureAck: p.CaptureAckSchema,
  Error: p.ErrorBodySchema,
  Health: p.HealthSchema,
} satisfies Record<string, v.GenericSchema>;

/** JSON Schemas of `defs`, each referring to the others as `<base><Name>` instead of `$defs`. */
function convert(defs: Record<string, v.GenericSchema>, target: 'draft-07' | 'draft-2020-12', base: string): Record<string, Json> {
  const out = toJsonSchemaDefs(defs, { target, errorMode: 'ignore' });
  const text = JSON.stringify(out).replaceAll('"#/$defs/', `"${base}`);
  return JSON.parse(text) as Record<string, Json>;
}

const ref = (name: keyof typeof schemas) => ({ $ref: `#/components/schemas/${name}` });
const jsonBody = (schema: Json, extra: Json = {}) => ({ content: { 'application/json': { schema, ...extra } } });

/**
 * Routes the server registers that answer only 404 `not_found` (`/api/*` for an unknown API
 * route, `/*` for any other): described in `info`, not as paths.
 */
export const fallbackRoutes = ['/api/*', '/*'] as const;

// --- OpenAPI -----------------------------------------------------------------------------------

/** Error answers, by name, for components.responses: each operation refers to them. */
let errorResponses: Record<string, Json> = {};

/** The error answers of one operation, grouped by status, each code with its message as an example. */
function errors(...codes: HttpErrorCode[]): Record<string, Json> {
  const byStatus = new Map<number, HttpErrorCode[]>();
  for (const code of codes) byStatus.set(httpErrors[code].status, [...(byStatus.get(httpErrors[code].status) ?? []), code]);
  const out: Record<string, Json> = {};
  for (const [status, group] of byStatus) {
    const name = `${status}-${group.join('-')}`;
    // The headers errors.ts's table gives these codes, each with the value it carries.
    const headers: Json = {};
    for (const code of group) {
      const fixed = ('headers' in httpErrors[code] ? httpErrors[code].headers : {}) as Readonly<Record<string, string>>;
      for (const [name, value] of Object.entries(fixed)) headers[name] = { description: `\`${value}\``, schema: { type: 'string' } };
    }
    errorResponses[name] = {
      description: group.map((c) => `\`${c}\`: ${httpErrors[c].message}`).join('; '),
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      ...jsonBody(ref('Error'), { examples: Object.fromEntries(group.map((c) => [c, { value: { error: c, message: httpErrors[c].message } }])) }),
    };
    out[String(status)] = { $ref: `#/components/responses/${name}` };
  }
  return out;
}

const webhookId = { name: 'id', in: 'path', required: true, description: 'The webhook id', schema: { type: 'string', pattern: p.webhookIdPattern.source } };
const requestId = { name: 'requestId', in: 'path', required: true, description: 'A request id (UUIDv7, lower-case hex)', schema: { type: 'string' } };
const subpath = {
  name: 'subpath',
  in: 'path',
  required: true,
  description: 'Any sub-path, slashes included: it is captured as `path`',
  schema: { type: 'string' },
};
const guarded = { security: [{}, { bearer: [] }] };
const notAllowed = (allow: string) => `Any other method answers 405 \`method_not_allowed\` with \`"allow": "${allow}"\`.`;
const apiFailures: HttpErrorCode[] = ['unauthorized', 'internal', 'storage_unavailable'];

function captureOperations(suffix: string, parameters: Json[]): Json {
  const methods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
  return Object.fromEntries(
    methods.map((method) => [
      method,
      {
        operationId: `capture${suffix}_${method}`,
        tags: ['capture'],
        summary: 'Captures the request',
        description:
          'Any method. The request is stored, then answered 2xx only once its row is committed in Postgres, then published to the room `webhook:<id>`. ' +
          'HEAD is answered without a body. Nothing answered with an error is stored.',
        parameters,
        requestBody: { required: false, description: 'Any body, up to HOOKY_MAX_BODY_BYTES', content: { '*/*': { schema: {} } } },
        responses: {
          '200': { description: 'Stored (the default answer)', ...jsonBody(ref('CaptureAck')) },
          default: { description: "Stored, answered with the webhook's configured `response` (status, headers, body, after delayMs)" },
          ...errors('invalid_request', 'not_found', 'payload_too_large', 'too_many_headers', 'headers_too_large', 'internal', 'storage_unavailable', 'draining', 'overloaded'),
        },
      },
    ]),
  );
}

export function openApi(): Json {
  errorResponses = {};
  const doc = {
    openapi: '3.1.0',
    info: {
      title: 'hooky HTTP API',
      version: p.PROTOCOL,
      description:
        'Captures (`/h/<id>`), the REST API (`/api`), health, and the WebSocket upgrade of `/ws` (its frames: docs/asyncapi.json). ' +
        'Every error answers `{"error": "<code>", "message": "<text>", …}`; clients match on the code. ' +
        `Unknown routes answer 404 \`not_found\` (${fallbackRoutes.map((r) => `\`${r}\``).join(', ')}). Generated by \`npm run docs\` from src/protocol.ts.`,
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: 'http://localhost:3000', description: 'the default PORT' }],
    tags: [
      { name: 'webhooks', description: 'The REST API; with HOOKY_API_TOKEN set, every /api route needs `Authorization: Bearer <token>`' },
      { name: 'capture', description: 'Capture endpoints; never behind the token' },
      { name: 'health' },
      { name: 'page', description: 'The inspector page, served from the same app' },
      { name: 'websocket' },
    ],
    paths: {
      '/api/webhooks': {
        description: notAllowed('GET, POST'),
        get: {
          operationId: 'listWebhooks',
          tags: ['webhooks'],
          summary: 'Lists webhooks, newest first',
          ...guarded,
          parameters: [
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } },
            { name: 'before', in: 'query', required: false, description: "The previous page's `next`", schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'One page', ...jsonBody(ref('WebhookList')) }, ...errors('invalid_request', ...apiFailures) },
        },
        post: {
          operationId: 'createWebhook',
          tags: ['webhooks'],
          summary: 'Creates a webhook',
          ...guarded,
          requestBody: { required: false, description: 'Optional; without `id` the server generates one', ...jsonBody(ref('CreateWebhook')) },
          responses: {
            '201': {
              description: 'Created',
              headers: { Location: { description: '`/api/webhooks/<id>`', schema: { type: 'string' } } },
              ...jsonBody(ref('Webhook')),
            },
            ...errors('invalid_request', 'conflict', 'too_many_webhooks', 'payload_too_large', ...apiFailures),
          },
        },
      },
      '/api/webhooks/{id}': {
        description: notAllowed('GET, DELETE'),
        parameters: [webhookId],
        get: {
          operationId: 'getWebhook',
          tags: ['webhooks'],
          summary: 'Reads a webhook',
          ...guarded,
          responses: { '200': { description: 'The webhook', ...jsonBody(ref('Webhook')) }, ...errors('not_found', ...apiFailures) },
        },
        delete: {
          operationId: 'deleteWebhook',
          tags: ['webhooks'],
          summary: 'Deletes a webhook and its captured requests',
          description: 'Its room receives `error` `WEBHOOK_DELETED` and is emptied.',
          ...guarded,
          responses: { '204': { description: 'Deleted' }, ...errors('not_found', ...apiFailures) },
        },
      },
      '/api/webhooks/{id}/requests': {
        description: notAllowed('GET, DELETE'),
        parameters: [webhookId],
        get: {
          operationId: 'listRequests',
          tags: ['webhooks'],
          summary: "Lists a webhook's captured requests, newest first, optionally filtered",
          description:
            'A page ends at `limit` requests or once its payloads reach HOOKY_MAX_PAGE_BYTES (one request at least). ' +
            'With a filter, a page examines at most HOOKY_SEARCH_SCAN_ROWS requests, so it may be short or empty with a `next`: follow `next` until it is null.',
          ...guarded,
          parameters: [
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } },
            { name: 'before', in: 'query', required: false, description: 'A request id: only older requests (the previous page\'s `next`)', schema: { type: 'string', pattern: p.requestIdPattern.source } },
            { name: 'method', in: 'query', required: false, description: 'Filter: the HTTP method, exactly (case-insensitive)', schema: { type: 'string' } },
            { name: 'path', in: 'query', required: false, description: 'Filter: a substring of the sub-path (case-insensitive)', schema: { type: 'string' } },
            { name: 'header', in: 'query', required: false, description: 'Filter: `name`, or `name:value` with a substring of the value (case-insensitive)', schema: { type: 'string' } },
            { name: 'q', in: 'query', required: false, description: 'Filter: text in the body (case-insensitive; base64 bodies byte-exact)', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'One page', ...jsonBody(ref('RequestPage')) }, ...errors('invalid_request', 'not_found', 'overloaded', ...apiFailures) },
        },
        delete: {
          operationId: 'deleteRequests',
          tags: ['webhooks'],
          summary: 'Deletes every request captured up to the call (the webhook stays)',
          ...guarded,
          responses: { '204': { description: 'Deleted' }, ...errors('not_found', ...apiFailures) },
        },
      },
      '/api/webhooks/{id}/requests/{requestId}': {
        description: notAllowed('GET, DELETE'),
        parameters: [webhookId, requestId],
        get: {
          operationId: 'getRequest',
          tags: ['webhooks'],
          summary: 'Reads one captured request',
          ...guarded,
          responses: { '200': { description: 'The captured request', ...jsonBody(ref('CapturedRequest')) }, ...errors('not_found', 'overloaded', ...apiFailures) },
        },
        delete: {
          operationId: 'deleteRequest',
          tags: ['webhooks'],
          summary: 'Deletes one captured request',
          ...guarded,
          responses: { '204': { description: 'Deleted' }, ...errors('not_found', ...apiFailures) },
        },
      },
      '/api/webhooks/{id}/requests/{requestId}/resend': {
        description: notAllowed('POST'),
        parameters: [webhookId, requestId],
        post: {
          operationId: 'resendRequest',
          tags: ['webhooks'],
          summary: 'Sends the stored request from the server to a target, exactly as captured',
          description:
            'Method, sub-path and query appended to `url`, headers less hop-by-hop, the exact body bytes. Off unless HOOKY_RESEND_ALLOW lists the target origin; redirects are not followed. ' +
            'The body must be sent as `Content-Type: application/json`.',
          ...guarded,
          requestBody: { required: true, ...jsonBody(ref('ResendBody')) },
          responses: {
            '200': { description: 'What the target answered', ...jsonBody(ref('ResendResult')) },
            ...errors('invalid_request', 'resend_disabled', 'forbidden_target', 'not_found', 'payload_too_large', 'target_unreachable', 'target_timeout', ...apiFailures),
          },
        },
      },
      '/api/webhooks/{id}/export': {
        description: notAllowed('GET'),
        parameters: [webhookId],
        get: {
          operationId: 'exportRequests',
          tags: ['webhooks'],
          summary: "Every request of a webhook, oldest first, streamed as an attachment",
          ...guarded,
          parameters: [{ name: 'format', in: 'query', required: false, schema: { type: 'string', enum: ['ndjson', 'har'], default: 'ndjson' } }],
          responses: {
            '200': {
              description: 'NDJSON (one captured request per line) or HAR 1.2',
              content: {
                'application/x-ndjson; charset=utf-8': { schema: { type: 'string' } },
                'application/json; charset=utf-8': { schema: { type: 'object', description: 'HAR 1.2' } },
              },
            },
            ...errors('invalid_request', 'not_found', ...apiFailures),
          },
        },
      },
      '/h/{id}': { parameters: [webhookId], ...captureOperations('', []) },
      '/h/{id}/{subpath}': { parameters: [webhookId, subpath], ...captureOperations('Subpath', []) },
      '/': {
        get: {
          operationId: 'home',
          tags: ['page'],
          summary: 'The browser page: lists webhooks, creates and deletes them',
          responses: { '200': { description: 'HTML', content: { 'text/html; charset=utf-8': { schema: { type: 'string' } } } }, '404': { description: 'The page was not built (`npm run build`)' } },
        },
      },
      '/inspect/{id}': {
        parameters: [webhookId],
        get: {
          operationId: 'inspector',
          tags: ['page'],
          summary: "The browser page's inspector of one webhook: its requests, live",
          responses: { '200': { description: 'HTML', content: { 'text/html; charset=utf-8': { schema: { type: 'string' } } } }, '404': { description: 'The page was not built (`npm run build`)' } },
        },
      },
      '/assets/{subpath}': {
        parameters: [{ name: 'subpath', in: 'path', required: true, description: 'A hashed file name', schema: { type: 'string' } }],
        get: {
          operationId: 'asset',
          tags: ['page'],
          summary: "The page's scripts, styles and icons: hashed names, `cache-control: immutable`, ETag, brotli or gzip by Accept-Encoding",
          responses: { '200': { description: 'The file' }, '304': { description: 'Not modified (If-None-Match)' }, '404': { description: 'No such asset' } },
        },
      },
      '/healthz': {
        get: {
          operationId: 'healthz',
          tags: ['health'],
          summary: 'The process runs',
          responses: { '200': { description: 'Running', ...jsonBody(ref('Health'), { example: { status: 'ok' } }) } },
        },
      },
      '/readyz': {
        get: {
          operationId: 'readyz',
          tags: ['health'],
          summary: 'The server can take captures: Postgres answers and it is not draining',
          responses: {
            '200': { description: 'Ready', ...jsonBody(ref('Health'), { example: { status: 'ready' } }) },
            '503': {
              description: 'Draining, or Postgres does not answer within 2 s',
              headers: { 'retry-after': { description: `\`${httpErrors.draining.headers['retry-after']}\``, schema: { type: 'string' } } },
              ...jsonBody(ref('Health'), {
                examples: Object.fromEntries(
                  (['draining', 'storage_unavailable'] as const).map((code) => [code, { value: { error: code, message: httpErrors[code].message, status: code } }]),
                ),
              }),
            },
          },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          tags: ['health'],
          summary: 'Prometheus metrics',
          responses: { '200': { description: 'Prometheus text format', content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: { type: 'string' } } } } },
        },
      },
      '/ws': {
        get: {
          operationId: 'websocket',
          tags: ['websocket'],
          summary: 'Opens the hooky.v1 WebSocket (frames: docs/asyncapi.json)',
          description:
            `Refusals are checked in this order: 503 draining, 426 version, 403 origin, 401 token, 400 subprotocol, 503 connection limit. ` +
            `A plain GET without Upgrade answers 426 \`upgrade_required\`. Refusals no retry can fix: ${[400, 401, 403, 426].filter(p.isPermanentRefusal).join(', ')}.`,
          ...guarded,
          parameters: [
            { name: 'Upgrade', in: 'header', required: true, schema: { const: 'websocket' } },
            { name: 'Sec-WebSocket-Version', in: 'header', required: true, schema: { const: '13' } },
            {
              name: 'Sec-WebSocket-Protocol',
              in: 'header',
              required: true,
              description: `Must offer \`${p.PROTOCOL}\`; a browser sends the API token as a second one, \`${p.TOKEN_PROTOCOL_PREFIX}<token>\``,
              schema: { type: 'string' },
            },
          ],
          responses: {
            '101': { description: `Switched to WebSocket; \`Sec-WebSocket-Protocol: ${p.PROTOCOL}\`` },
            ...errors('unsupported_protocol', 'unauthorized', 'forbidden_origin', 'upgrade_required', 'draining', 'too_many_connections'),
          },
        },
      },
    },
    components: {
      schemas: convert(schemas, 'draft-2020-12', '#/components/schemas/'),
      responses: {} as Record<string, Json>,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'HOOKY_API_TOKEN; required only when the server sets it' },
      },
    },
  };
  doc.components.responses = Object.fromEntries(Object.entries(errorResponses).sort(([a], [b]) => (a < b ? -1 : 1)));
  return doc;
}

// --- AsyncAPI ----------------------------------------------------------------------------------

const serverEvents = Object.keys(p.serverData) as p.ServerEventName[];
const clientEvents = Object.keys(p.clientSchemas) as p.ClientEvent[];

/** The message name of an event: `new-request` → `newRequest`. */
const messageName = (event: string) => event.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());

const serverSummaries: Record<p.ServerEventName, string> = {
  connected: 'The first frame of every connection',
  joined: 'The reply to `join`; with `since`, the replay follows as `new-request` frames carrying the join\'s `ref`, then `replayed`',
  replayed: 'Ends the replay of a `join` with `since`; `truncated`: join again with `since` = `last` for the next page',
  left: 'The reply to `leave`',
  'new-request': 'A captured request, to every connection in its room once committed',
  error: `A refusal; the connection stays open. Codes: ${Object.entries(p.wsErrorMessages).map(([c, m]) => `\`${c}\` (${m})`).join(', ')}`,
  disconnect: 'Sent before the server closes the connection (shutdown: close code 1001)',
  pong: 'The reply to `ping`',
};
const clientSummaries: Record<p.ClientEvent, string> = {
  join: 'Follows a webhook\'s room; `since` replays what was committed after that request id first',
  leave: 'Stops following a room',
  ping: 'Application-level heartbeat (browsers cannot see WebSocket pings)',
};
const replies: Record<p.ClientEvent, p.ServerEventName[]> = { join: ['joined', 'error'], leave: ['left', 'error'], ping: ['pong', 'error'] };

export function asyncApi(): Json {
  const frames = {
    ...Object.fromEntries(serverEvents.map((e) => [`${messageName(e)}Frame`, p.serverSchemas[e]])),
    ...Object.fromEntries(clientEvents.map((e) => [`${messageName(e)}Frame`, p.clientSchemas[e]])),
  } as Record<string, v.GenericSchema>;
  const message = (event: string, summary: string) => ({
    name: event,
    title: event,
    summary,
    payload: { $ref: `#/components/schemas/${messageName(event)}Frame` },
  });
  const channelMessage = (event: string) => ({ $ref: `#/channels/ws/messages/${messageName(event)}` });
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'hooky WebSocket',
      version: p.PROTOCOL,
      description:
        `The \`${p.PROTOCOL}\` protocol of \`/ws\`: every frame is one UTF-8 JSON text frame \`{"event", "data", "ref"?}\`; ` +
        'a reply to a client frame that carries `ref` echoes it. Close codes (each after `disconnect`): 1001 shutdown, 1008 rate limit, ' +
        '1009 frame over the limit. The upgrade and its refusals: docs/openapi.json (`GET /ws`). Generated by `npm run docs` from src/protocol.ts.',
      license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' },
    },
    defaultContentType: 'application/json',
    servers: {
      local: {
        host: 'localhost:3000',
        protocol: 'ws',
        description: `Offer subprotocol \`${p.PROTOCOL}\`. With HOOKY_API_TOKEN set: \`Authorization: Bearer <token>\`, or from a browser the subprotocol \`${p.TOKEN_PROTOCOL_PREFIX}<token>\`.`,
        security: [{ $ref: '#/components/securitySchemes/bearer' }],
      },
    },
    channels: {
      ws: {
        address: '/ws',
        title: 'The hooky.v1 WebSocket',
        description: 'One connection follows any number of rooms (`webhook:<id>`, up to HOOKY_MAX_ROOMS).',
        messages: Object.fromEntries([...serverEvents, ...clientEvents].map((e) => [messageName(e), { $ref: `#/components/messages/${messageName(e)}` }])),
        bindings: {
          ws: {
            method: 'GET',
            headers: {
              type: 'object',
              properties: { 'Sec-WebSocket-Protocol': { type: 'string', description: `Must offer \`${p.PROTOCOL}\`` } },
              required: ['Sec-WebSocket-Protocol'],
            },
            bindingVersion: '0.1.0',
          },
        },
      },
    },
    operations: {
      ...Object.fromEntries(
        clientEvents.map((e) => [
          messageName(e),
          {
            action: 'receive',
            channel: { $ref: '#/channels/ws' },
            summary: clientSummaries[e],
            messages: [channelMessage(e)],
            reply: { channel: { $ref: '#/channels/ws' }, messages: replies[e].map(channelMessage) },
          },
        ]),
      ),
      ...Object.fromEntries(
        serverEvents.map((e) => [
          `send${messageName(e)[0]!.toUpperCase()}${messageName(e).slice(1)}`,
          { action: 'send', channel: { $ref: '#/channels/ws' }, summary: serverSummaries[e], messages: [channelMessage(e)] },
        ]),
      ),
    },
    components: {
      messages: {
        ...Object.fromEntries(serverEvents.map((e) => [messageName(e), message(e, serverSummaries[e])])),
        ...Object.fromEntries(clientEvents.map((e) => [messageName(e), message(e, clientSummaries[e])])),
      },
      schemas: convert({ ...schemas, ...frames }, 'draft-07', '#/components/schemas/'),
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'HOOKY_API_TOKEN; required only when the server sets it' },
      },
    },
  };
}

/** The files' text: what `npm run docs` writes and the test compares with. */
export const render = (doc: Json) => `${JSON.stringify(doc, null, 2)}\n`;

export const files = { 'docs/openapi.json': openApi, 'docs/asyncapi.json': asyncApi } as const;

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = new URL('..', import.meta.url);
  for (const [path, build] of Object.entries(files)) {
    writeFileSync(new URL(path, root), render(build()));
    process.stdout.write(`wrote ${path}\n`);
  }
}
