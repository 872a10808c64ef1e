/** The `hooky` command's arguments, --help and --version, `create` and `serve`, run as a process. */
import { readFileSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { run, hooky, token } from './support/cli.js';
import { http } from './support/http.js';
import { freePort, withCleanup } from './support/suite.js';
import { testDatabaseUrl } from './support/db.js';
import { startServer, uniqueId } from './support/server.js';

// --- help and version ----------------------------------------------------------------------------

const usage = withCleanup('hooky --help and --version');

usage('each command has its own --help, exit 0; the global help lists the commands', async () => {
  const global = await run(['--help']);
  assert.is(global.code, 0);
  assert.match(global.stdout, /^Usage: hooky <command>/);
  for (const command of ['serve', 'create', 'listen']) {
    for (const flag of ['--help', '-h']) {
      const r = await run([command, flag]);
      assert.is(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: hooky ${command}\\b`));
      assert.is.not(r.stdout, global.stdout);
    }
  }
  assert.is((await run(['help', 'listen'])).stdout, (await run(['listen', '--help'])).stdout);
  const listen = await run(['listen', '--help']);
  for (const option of ['--forward', '--json', '--since', '--wait', '--url', '--token']) assert.match(listen.stdout, option);
  assert.match((await run(['create', '--help'])).stdout, '--id');
});

usage('--version prints the version in package.json', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = await run(['--version']);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, `hooky ${pkg.version}\n`);
});

usage.run();

// --- hooky create ------------------------------------------------------------------------------

const create = withCleanup('hooky create');

create('create --id prints the capture URL, and the webhook exists', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const id = uniqueId('made');
  const { code, stdout, stderr } = await run(['create', '--id', id, '--url', server.url]);
  assert.is(code, 0, stderr);
  assert.is(stdout, `http://localhost:${server.server.port}/h/${id}\n`);
  assert.is((await http('GET', `${server.url}/api/webhooks/${id}`)).status, 200);
});

create('HOOKY_URL is the default server; a taken id exits 1 with the reason', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const generated = await run(['create'], { HOOKY_URL: server.url });
  assert.is(generated.code, 0, generated.stderr);
  const id = /\/h\/([A-Za-z0-9_-]+)\n$/.exec(generated.stdout)?.[1];
  assert.ok(id, generated.stdout);
  const taken = await run(['create', '--id', id!], { HOOKY_URL: server.url });
  assert.is(taken.code, 1);
  assert.is(taken.stdout, '');
  assert.match(taken.stderr, /^hooky: could not create the webhook: HTTP 409 conflict/);
});

create('usage errors exit 2 and point to --help; an unreachable server exits 1', async () => {
  const cases = [
    [],
    ['frobnicate'],
    ['create', '--bogus'],
    ['create', 'extra'],
    ['create', '--token', ''],
    ['create', '--token', 'has spaces in it'],
    ['listen'],
    ['listen', 'a', 'b'],
    ['listen', 'not an id'],
    ['listen', 'ok', '--forward', 'ftp://x'],
    ['listen', 'ok', '--token', 'slash/and=equals'],
    ['serve', '--token', token],
    ['serve', '--url', 'http://localhost:1'],
    // The last of a repeated option would win without a word.
    ['create', '--id', 'a', '--id', 'b'],
    ['listen', 'ok', '--since', 'x', '--since', 'y'],
    // HOOKY_WORKERS's rule, told as the flag's.
    ['serve', '--workers', '0'],
    ['serve', '--workers', 'abc'],
  ];
  const results = await Promise.all(cases.map((args) => run(args)));
  results.forEach((r, i) => {
    assert.is(r.code, 2, `hooky ${cases[i]!.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /hooky --help|Usage: hooky/);
  });
  assert.match(results.at(-4)!.stderr, 'hooky: --id may be given once');
  assert.match(results.at(-2)!.stderr, 'hooky: --workers must be at least 1');
  assert.match(results.at(-1)!.stderr, 'hooky: --workers must be a whole number');
  const port = await freePort();
  const down = await run(['create', '--url', `http://127.0.0.1:${port}`]);
  assert.is(down.code, 1);
  assert.match(down.stderr, `hooky: cannot reach http://127.0.0.1:${port}`);
  assert.match(down.stderr, 'ECONNREFUSED');
});

create('with HOOKY_API_TOKEN on the server: --token or $HOOKY_API_TOKEN sends it; none or a wrong one exits 1 saying what to do', async (ctx) => {
  const server = await startServer({ HOOKY_API_TOKEN: token });
  ctx.cleanup.push(() => server.close());
  const byFlag = await run(['create', '--url', server.url, '--token', token]);
  assert.is(byFlag.code, 0, byFlag.stderr);
  const byEnv = await run(['create', '--url', server.url], { HOOKY_API_TOKEN: token });
  assert.is(byEnv.code, 0, byEnv.stderr);
  for (const out of [byFlag.stdout, byEnv.stdout]) {
    const id = /\/h\/([A-Za-z0-9_-]+)\n$/.exec(out)?.[1];
    assert.is((await http('GET', `${server.url}/api/webhooks/${id}`, undefined, { authorization: `Bearer ${token}` })).status, 200);
  }
  const none = await run(['create', '--url', server.url]);
  assert.is(none.code, 1);
  assert.is(none.stderr, `hooky: ${server.url} requires an API token: pass --token or set HOOKY_API_TOKEN\n`);
  // The flag wins over the environment.
  const wrong = await run(['create', '--url', server.url, '--token', 'wrong-token-0123456789'], { HOOKY_API_TOKEN: token });
  assert.is(wrong.code, 1);
  assert.is(wrong.stderr, `hooky: ${server.url} did not accept the API token (HTTP 401): check --token or HOOKY_API_TOKEN\n`);
  assert.not.match(wrong.stderr, 'wrong-token');
});

create.run();

// --- what the command loads ----------------------------------------------------------------------

const imports = withCleanup('hooky\'s imports');

imports('create and listen load the SDK, protocol, forward, format, rest and payload, never uWS; only serve loads the server', async () => {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [new URL('../src/cli.ts', import.meta.url).pathname],
    bundle: true,
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
    packages: 'external',
    // serve's `import('./main.js')`, the one way into the server, and its `import('./config.js')` to check --workers.
    plugins: [{ name: 'serve', setup: (b) => b.onResolve({ filter: /^\.\/(main|config)\.js$/ }, (a) => ({ path: a.path, external: true })) }],
  });
  const ours = Object.keys(result.metafile.inputs).filter((i) => i.startsWith('src/') && !i.startsWith('src/client/'));
  assert.equal(ours.sort(), ['src/cli.ts', 'src/format.ts', 'src/forward.ts', 'src/payload.ts', 'src/protocol.ts', 'src/rest.ts', 'src/watcher.ts']);
  assert.not.match(result.outputFiles[0]!.text, /uWebSockets|uws-js-unofficial/);
});

imports.run();

// --- hooky serve -------------------------------------------------------------------------------

const serve = withCleanup('hooky serve');

serve('serve runs the server until SIGTERM, then exits 0', async (ctx) => {
  const port = await freePort();
  const p = hooky(['serve'], { DATABASE_URL: await testDatabaseUrl(), PORT: String(port), HOST: '127.0.0.1', HOOKY_LOG_LEVEL: 'info' });
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /hooky listening on/, 15_000);
  assert.is((await http('GET', `http://127.0.0.1:${port}/healthz`)).status, 200);
  assert.is(await p.stop(), 0);
  assert.match(p.out.stderr, 'stopped');
});

serve.run();
