/** `hooky listen`, run as a process: printing, --json, --since, --forward, loops, refusals, resuming. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as assert from 'uvu/assert';
import { hooky, newWebhook, receiver, run, sign, sleep, token, until, within } from './support/cli.js';
import { http } from './support/http.js';
import { freePort, withCleanup } from './support/suite.js';
import { startServer, uniqueId, type TestServer } from './support/server.js';

const listen = withCleanup('hooky listen');

listen('--forward replays method, path, query, headers and a binary body byte for byte; the signature verifies; it keeps forwarding across a restart', async (ctx) => {
  const port = await freePort();
  let server: TestServer = await startServer({ PORT: String(port) });
  ctx.cleanup.push(() => server.close());
  const target = await receiver();
  ctx.cleanup.push(target.close);
  const id = await newWebhook(server.url);
  const p = hooky(['listen', id, '--url', server.url, '--forward', `http://127.0.0.1:${target.port}/target?src=hooky`]);
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /listening for requests to/);

  // A binary body (not UTF-8: stored as base64) under a GitHub-style signature.
  const binary = Buffer.concat([randomBytes(64), Buffer.from([0xff, 0xfe, 0x00, 0x80])]);
  const first = await http('PUT', `${server.url}/h/${id}/events/42?x=1&tag=a&tag=b&sp=a+b&t=a%20b~`, binary, {
    'content-type': 'application/octet-stream',
    'x-hub-signature-256': sign(binary),
    'x-custom': 'kept',
    'user-agent': 'GitHub-Hookshot/abc',
    'x-hop': 'dropped: named by Connection',
    connection: 'close, x-hop',
  });
  assert.is(first.status, 200);
  // A UTF-8 body with its own signature, on the bare capture URL.
  const json = Buffer.from('{"type":"payment_intent.succeeded","amount":4200,"note":"héllo"}');
  assert.is((await http('POST', `${server.url}/h/${id}`, json, { 'content-type': 'application/json', 'x-hub-signature-256': sign(json) })).status, 200);
  await until(() => target.received.length === 2, () => `2 forwarded; stderr: ${p.out.stderr}`);

  const [a, b] = target.received;
  assert.is(a!.method, 'PUT');
  assert.is(a!.url, '/target/events/42?src=hooky&x=1&tag=a&tag=b&sp=a+b&t=a%20b~', 'the query as it was sent');
  assert.ok(a!.body.equals(binary), 'binary body byte-identical');
  assert.ok(a!.verified, 'signature verifies at the target');
  assert.is(a!.headers['content-type'], 'application/octet-stream');
  assert.is(a!.headers['x-custom'], 'kept');
  assert.is(a!.headers['user-agent'], 'GitHub-Hookshot/abc');
  assert.is(a!.headers['content-length'], String(binary.length));
  assert.is(a!.headers.host, `127.0.0.1:${target.port}`);
  assert.is(a!.headers['x-hop'], undefined);
  assert.is(a!.headers['transfer-encoding'], undefined);
  assert.match(String(a!.headers['x-hooky-forwarded-by']), /^[0-9a-f]{16}$/);
  assert.is(b!.method, 'POST');
  assert.is(b!.url, '/target?src=hooky');
  assert.ok(b!.body.equals(json) && b!.verified);

  await p.waitFor('stdout', /→ 202 Accepted POST/);
  // One line per request as it arrives, one per forward as it completes: the two may interleave.
  const lines = p.out.stdout.trim().split('\n');
  assert.is(lines.length, 4, p.out.stdout);
  assert.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3}  PUT    \/events\/42\?x=1&tag=a&tag=b&sp=a\+b&t=a%20b~  68 B  application\/octet-stream$/);
  assert.ok(
    lines.some((l) => /^→ 202 Accepted PUT http:\/\/127\.0\.0\.1:\d+\/target\/events\/42\?src=hooky&x=1&tag=a&tag=b&sp=a\+b&t=a%20b~ \(\d+ ms\)$/.test(l)),
    p.out.stdout,
  );

  // The server restarts; a request captured as soon as it is back still reaches the target, once.
  await server.close();
  server = await startServer({ PORT: String(port) });
  const third = Buffer.from('after the restart');
  assert.is((await http('POST', `${server.url}/h/${id}/again`, third, { 'x-hub-signature-256': sign(third) })).status, 200);
  await until(() => target.received.length === 3, () => `the third forwarded; stderr: ${p.out.stderr}`);
  assert.is(target.received[2]!.url, '/target/again?src=hooky');
  assert.ok(target.received[2]!.verified);
  await sleep(300);
  assert.is(target.received.length, 3);
  assert.match(p.out.stderr, 'disconnected: server shutting down');
  assert.match(p.out.stderr, `rejoined ${id}`);
  assert.is(await p.stop(), 0);
  assert.match(p.out.stderr, `stopped; to go on from here: hooky listen ${id} --since `);
});

listen('--json prints each request as the payload the server stores', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url);
  const p = hooky(['listen', id, '--json'], { HOOKY_URL: server.url });
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /listening for requests to/);
  const ack = await http('PATCH', `${server.url}/h/${id}/x?q=1`, '{"a":1}', { 'content-type': 'application/json' });
  const requestId = (JSON.parse(ack.text) as { id: string }).id;
  await p.waitFor('stdout', /\n/);
  const stored = await http('GET', `${server.url}/api/webhooks/${id}/requests/${requestId}`);
  assert.equal(JSON.parse(p.out.stdout), JSON.parse(stored.text));
  assert.is(await p.stop(), 0);
  assert.match(p.out.stderr, `--since ${requestId}`);
});

listen('--since replays what was captured after that request, then goes on live', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url);
  const ids: string[] = [];
  for (const body of ['one', 'two', 'three']) ids.push((JSON.parse((await http('POST', `${server.url}/h/${id}`, body)).text) as { id: string }).id);
  const p = hooky(['listen', id, '--json', '--since', ids[0]!], { HOOKY_URL: server.url });
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /listening for requests to/);
  ids.push((JSON.parse((await http('POST', `${server.url}/h/${id}`, 'four')).text) as { id: string }).id);
  await p.waitFor('stdout', /(.*\n){3}/);
  await sleep(100);
  const got = p.out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; body: string });
  assert.equal(got.map((r) => r.body), ['two', 'three', 'four']);
  assert.equal(got.map((r) => r.id), ids.slice(1));
});

listen('an unknown webhook exits 1 with a clear message', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const missing = uniqueId('missing');
  const r = await run(['listen', missing, '--url', server.wsUrl]);
  assert.is(r.code, 1);
  assert.match(r.stderr, `hooky: webhook ${missing} not found on ${server.url}`);
});

listen('with HOOKY_API_TOKEN on the server: the token gets listen in; without it, or with a wrong one, it exits 1 at once', async (ctx) => {
  const server = await startServer({ HOOKY_API_TOKEN: token });
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url, token);
  const p = hooky(['listen', id, '--url', server.url, '--json'], { HOOKY_API_TOKEN: token });
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /listening for requests to/);
  const ack = await http('POST', `${server.url}/h/${id}`, 'with a token');
  await p.waitFor('stdout', /\n/);
  assert.is((JSON.parse(p.out.stdout) as { id: string }).id, (JSON.parse(ack.text) as { id: string }).id);
  assert.is(await p.stop(), 0);

  const none = await run(['listen', id, '--url', server.url]);
  assert.is(none.code, 1);
  assert.match(none.stderr, `hooky: ${server.url} requires an API token: pass --token or set HOOKY_API_TOKEN\n`);
  assert.not.match(none.stderr, 'reconnecting');
  const wrong = await run(['listen', id, '--url', server.url, '--token', 'wrong-token-0123456789']);
  assert.is(wrong.code, 1);
  assert.match(wrong.stderr, `hooky: ${server.url} did not accept the API token (HTTP 401): check --token or HOOKY_API_TOKEN\n`);
});

listen('a wrong --url exits 1 at once, saying the first connection failed; with --wait it keeps retrying until the server is up', async (ctx) => {
  const port = await freePort();
  const wrong = hooky(['listen', 'some-hook', '--url', `http://127.0.0.1:${port}`]);
  ctx.cleanup.push(() => wrong.stop());
  const down = { code: await within(wrong.exited, 8000, 'listen with a wrong --url'), ...wrong.out };
  assert.is(down.code, 1);
  assert.match(down.stderr, `hooky: cannot connect to http://127.0.0.1:${port}: `);
  assert.match(down.stderr, 'pass --wait to keep retrying');
  assert.not.match(down.stderr, 'reconnecting');

  // The webhook is made through another server on the same database, before this one is up.
  const other = await startServer();
  ctx.cleanup.push(() => other.close());
  const id = await newWebhook(other.url);
  const p = hooky(['listen', id, '--url', `http://127.0.0.1:${port}`, '--wait']);
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /reconnecting in/);
  assert.match(p.out.stderr, 'cannot connect: ');
  const server = await startServer({ PORT: String(port) });
  ctx.cleanup.push(() => server.close());
  await p.waitFor('stderr', new RegExp(`listening for requests to ${id}`), 15_000);
  assert.is(await p.stop(), 0);
});

listen('Ctrl-C prints the whole command that goes on from there: --since, --url, --forward and --json, quoted for the shell, never the token', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const target = await receiver();
  ctx.cleanup.push(target.close);
  const id = await newWebhook(server.url);
  const forward = `http://127.0.0.1:${target.port}/in?a=1&b=it's`;
  const p = hooky(['listen', id, '--url', server.url, '--forward', forward, '--json', '--token', token]);
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /listening for requests to/);
  const requestId = (JSON.parse((await http('POST', `${server.url}/h/${id}`, 'one')).text) as { id: string }).id;
  await until(() => target.received.length === 1, () => `the forward; stderr: ${p.out.stderr}`);
  await p.waitFor('stderr', /→ 401/);
  assert.is(await p.stop(), 0);
  const hint = /stopped; to go on from here: (.*)\n/.exec(p.out.stderr)?.[1];
  assert.ok(hint, p.out.stderr);
  assert.not.match(hint!, token);
  assert.match(hint!, / \(and --token again, or HOOKY_API_TOKEN\)$/);
  // The shell reads the command back as the words of the run, with the new --since.
  const command = hint!.replace(/ \(and --token .*$/, '');
  const words = execFileSync('sh', ['-c', `printf '%s\\n' ${command}`], { encoding: 'utf8' }).trimEnd().split('\n');
  assert.equal(words, ['hooky', 'listen', id, '--since', requestId, '--url', server.url, '--forward', forward, '--json']);
});

listen('Ctrl-C before any request still prints where to go on: the newest request when the join took effect', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url);
  const requestId = (JSON.parse((await http('POST', `${server.url}/h/${id}`, 'before')).text) as { id: string }).id;
  const p = hooky(['listen', id, '--url', server.url]);
  ctx.cleanup.push(() => p.stop());
  await p.waitFor('stderr', /listening for requests to/);
  assert.is(await p.stop(), 0);
  assert.match(p.out.stderr, `stopped; to go on from here: hooky listen ${id} --since ${requestId} --url ${server.url}\n`);
});

listen.run();

// --- forwarding loops ---------------------------------------------------------------------------

const loops = withCleanup('hooky listen --forward loops');

loops('--forward to the webhook\'s own capture URL, under any loopback name, exits 2 before connecting', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const id = await newWebhook(server.url);
  const port = server.server.port;
  for (const forward of [`http://127.0.0.1:${port}/h/${id}`, `http://localhost:${port}/h/${id}/sub/path?x=1`]) {
    const r = await run(['listen', id, '--url', server.url, '--forward', forward]);
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, `is the capture URL of ${id} itself: every forwarded request would be captured and forwarded again`);
  }
  // Another webhook on the same server, or the same path on another port, is no loop by itself.
  const other = hooky(['listen', id, '--url', `http://127.0.0.1:${await freePort()}`, '--forward', `http://127.0.0.1:${port}/h/${id}`]);
  ctx.cleanup.push(() => other.stop());
  assert.is(await within(other.exited, 8000, 'listen on another port'), 1, other.out.stderr);
  assert.match(other.out.stderr, 'cannot connect to');
});

loops('a loop through two listeners (A forwards to B\'s webhook, B forwards back to A\'s) stops A after one round, with a clear message', async (ctx) => {
  const server = await startServer();
  ctx.cleanup.push(() => server.close());
  const [one, two] = [await newWebhook(server.url), await newWebhook(server.url)];
  const a = hooky(['listen', one, '--url', server.url, '--forward', `${server.url}/h/${two}`]);
  const b = hooky(['listen', two, '--url', server.url, '--forward', `${server.url}/h/${one}`]);
  ctx.cleanup.push(() => a.stop(), () => b.stop());
  await a.waitFor('stderr', /listening for requests to/);
  await b.waitFor('stderr', /listening for requests to/);
  assert.is((await http('POST', `${server.url}/h/${one}`, 'once')).status, 200);
  assert.is(await within(a.exited, 10_000, `listen ${one} in a loop`), 1);
  assert.match(a.out.stderr, /hooky: forwarding loop: request [0-9a-f-]{36} is one this command forwarded to /);
  await sleep(500);
  const count = async (id: string) =>
    (JSON.parse((await http('GET', `${server.url}/api/webhooks/${id}/requests`)).text) as { requests: { headers: Record<string, string> }[] }).requests;
  const [onOne, onTwo] = [await count(one), await count(two)];
  // The original, and its copy back from B; B received one copy from A.
  assert.is(onOne.length, 2);
  assert.is(onTwo.length, 1);
  assert.match(onOne[0]!.headers['x-hooky-forwarded-by']!, /^[0-9a-f]{16}, [0-9a-f]{16}$/);
  assert.is(await b.stop(), 0);
});

loops.run();

