import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';
import { Validator } from '@seriousme/openapi-schema-validator';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { asyncApi, fallbackRoutes, files, openApi, render } from '../src/apidocs.js';
import { clientSchemas, serverData } from '../src/protocol.js';
import { uws } from '../src/uws.js';
import { startServer } from './support/server.js';
import { withCleanup } from './support/suite.js';
import { openClient } from './support/ws.js';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

const generated = suite('generated API docs');

generated('docs/openapi.json and docs/asyncapi.json are what `npm run docs` writes from the schemas today', () => {
  for (const [path, build] of Object.entries(files)) {
    // Not assert.fixture: a diff of 2,000 lines helps nobody; the command does.
    assert.ok(read(path) === render(build()), `${path} is stale: run \`npm run docs\` and commit the result`);
  }
});

generated('docs/openapi.json is valid OpenAPI 3.1', async () => {
  const validator = new Validator();
  const result = await validator.validate(JSON.parse(read('docs/openapi.json')) as Parameters<Validator['validate']>[0]);
  assert.is(validator.version, '3.1');
  assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
});

generated('docs/asyncapi.json is valid AsyncAPI 3.0', async () => {
  const { document, diagnostics } = await new Parser().parse(read('docs/asyncapi.json'));
  // Severity 0 is an error; the rest are hints such as "AsyncAPI 3.1 exists".
  const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join('.')}: ${d.message}`);
  assert.equal(errors, []);
  assert.is(document?.version(), '3.0.0');
});

generated.run();

// --- what the server answers is documented -----------------------------------------------------

type Registered = { method: string; pattern: string };
const routeMethods = new Set(['get', 'post', 'put', 'del', 'patch', 'options', 'head', 'connect', 'trace', 'any', 'ws']);

/**
 * Starts a server whose uWS app records every route it registers, whichever module registers
 * it: the list the server answers from, not one kept beside it.
 */
async function recordRoutes() {
  const registered: Registered[] = [];
  const uwsModule = uws as unknown as { App: (...args: unknown[]) => object };
  const App = uwsModule.App;
  uwsModule.App = (...args: unknown[]) => {
    const app = App(...args) as Record<string | symbol, unknown>;
    const proxy: object = new Proxy(app, {
      get(target, key) {
        const value = target[key];
        if (typeof value !== 'function') return value;
        const method = value as (...a: unknown[]) => unknown;
        if (typeof key !== 'string' || !routeMethods.has(key)) return method.bind(target);
        return (pattern: string, ...rest: unknown[]) => {
          registered.push({ method: key, pattern });
          const result = method.call(target, pattern, ...rest);
          return result === target ? proxy : result;
        };
      },
    });
    return proxy;
  };
  try {
    return { server: await startServer(), registered };
  } finally {
    uwsModule.App = App;
  }
}

/** `/api/webhooks/:id` → `/api/webhooks/{id}`; the capture's trailing `*` is `{subpath}`. */
const openApiPath = (pattern: string) => pattern.replace(/:(\w+)/g, '{$1}').replace(/\/\*$/, '/{subpath}');
const openApiMethod = (method: string) => (method === 'del' ? 'delete' : method);

const complete = withCleanup('API docs against the running server');

complete('every route the server registers is in docs/openapi.json (or docs/asyncapi.json for the WebSocket), and every documented one is registered', async (ctx) => {
  const { server, registered } = await recordRoutes();
  ctx.cleanup.push(() => server.close());
  assert.ok(registered.length > 10, `recorded ${registered.length} routes`);
  const paths = (openApi() as { paths: Record<string, Record<string, unknown>> }).paths;
  const channels = Object.values((asyncApi() as { channels: Record<string, { address: string }> }).channels).map((c) => c.address);
  const missing: string[] = [];
  for (const { method, pattern } of registered) {
    if (method === 'ws') {
      if (!channels.includes(pattern)) missing.push(`ws ${pattern} (asyncapi channel)`);
      continue;
    }
    if ((fallbackRoutes as readonly string[]).includes(pattern)) continue;
    const item = paths[openApiPath(pattern)];
    // `any` also answers 405 for the methods a route does not serve: the path is what counts.
    if (item === undefined || (method !== 'any' && item[openApiMethod(method)] === undefined)) missing.push(`${method} ${pattern}`);
  }
  assert.equal(missing, [], `not documented: ${missing.join(', ')}; add them to src/apidocs.ts and run \`npm run docs\``);

  const operations = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
  const answered = (path: string, op: string) =>
    registered.some((r) => openApiPath(r.pattern) === path && (r.method === 'any' || openApiMethod(r.method) === op));
  const unregistered = Object.entries(paths).flatMap(([path, item]) =>
    operations.filter((op) => item[op] !== undefined && !answered(path, op)).map((op) => `${op} ${path}`),
  );
  assert.equal(unregistered, []);
});

complete('every event the server reads is an AsyncAPI operation, and every event it sends a message', async (ctx) => {
  const { server } = await recordRoutes();
  ctx.cleanup.push(() => server.close());
  const doc = asyncApi() as { operations: Record<string, { action: string; messages: { $ref: string }[] }>; components: { messages: Record<string, { name: string }> } };
  const named = (ref: string) => doc.components.messages[ref.split('/').pop()!]!.name;
  const documented = (action: string) => Object.values(doc.operations).filter((o) => o.action === action).flatMap((o) => o.messages.map((m) => named(m.$ref)));
  // The server's own list: what it names in UNKNOWN_EVENT.
  const client = await openClient(server.wsUrl);
  ctx.cleanup.push(() => client.close());
  await client.next('connected');
  client.send({ event: 'no-such-event', data: {} });
  const { data } = await client.next('error');
  assert.is(data.code, 'UNKNOWN_EVENT');
  assert.equal([...(data.supported as string[])].sort(), documented('receive').sort());
  assert.equal(Object.keys(clientSchemas).sort(), documented('receive').sort());
  assert.equal(Object.keys(serverData).sort(), documented('send').sort());
});

complete.run();
