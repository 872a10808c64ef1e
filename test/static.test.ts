import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gunzipSync, brotliDecompressSync } from 'node:zlib';
import { request } from 'node:http';
import { buildPage } from '../src/page/build.js';
import { chooseEncoding } from '../src/static.js';
import { startServer, type TestServer } from './support/server.js';

/** GET with exact headers and no automatic decompression (fetch would decode and hide it). */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    })
      .on('error', reject)
      .end();
  });
}

const serving = suite<{ srv: TestServer; js: string; css: string }>('static page serving', {} as never);
serving.before(async (ctx) => {
  await buildPage();
  ctx.srv = await startServer();
  const html = (await get(`${ctx.srv.url}/`)).body.toString();
  ctx.js = /src="(\/assets\/main-[^"]+\.js)"/.exec(html)![1]!;
  ctx.css = /href="(\/assets\/style-[^"]+\.css)"/.exec(html)![1]!;
});
serving.after(async (ctx) => ctx.srv?.close());

serving('GET / and /inspect/:id answer the page with a strict CSP and no-cache', async ({ srv }) => {
  for (const path of ['/', '/inspect/some-hook']) {
    const res = await get(`${srv.url}${path}`);
    assert.is(res.status, 200);
    assert.is(res.headers['content-type'], 'text/html; charset=utf-8');
    assert.is(res.headers['cache-control'], 'no-cache');
    const csp = String(res.headers['content-security-policy']);
    assert.match(csp, "default-src 'none'");
    assert.match(csp, "script-src 'self'");
    assert.not.match(csp, 'unsafe-inline');
    assert.is(res.headers['x-content-type-options'], 'nosniff');
    assert.not.match(res.body.toString(), /<script>|style=/, 'no inline script or style');
  }
});

serving('hashed assets are immutable, typed, and sent brotli or gzip as Accept-Encoding allows', async ({ srv, js, css }) => {
  const plain = await get(`${srv.url}${js}`);
  assert.is(plain.status, 200);
  assert.is(plain.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.is(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
  assert.is(plain.headers['content-encoding'], undefined);
  const br = await get(`${srv.url}${js}`, { 'accept-encoding': 'gzip, deflate, br' });
  assert.is(br.headers['content-encoding'], 'br');
  assert.ok(brotliDecompressSync(br.body).equals(plain.body));
  const gz = await get(`${srv.url}${js}`, { 'accept-encoding': 'gzip, br;q=0' });
  assert.is(gz.headers['content-encoding'], 'gzip');
  assert.ok(gunzipSync(gz.body).equals(plain.body));
  assert.is((await get(`${srv.url}${css}`)).headers['content-type'], 'text/css; charset=utf-8');
  assert.is((await get(`${srv.url}/assets/nope-123.js`)).status, 404);
});

serving('an If-None-Match with the ETag answers 304 without a body', async ({ srv, js }) => {
  const first = await get(`${srv.url}${js}`);
  const etag = String(first.headers.etag);
  assert.match(etag, /^"[\w-]+"$/);
  const again = await get(`${srv.url}${js}`, { 'if-none-match': etag });
  assert.is(again.status, 304);
  assert.is(again.body.length, 0);
  const page = await get(`${srv.url}/`, { 'if-none-match': `W/${String((await get(`${srv.url}/`)).headers.etag)}` });
  assert.is(page.status, 304);
});

serving('the page and its assets fit the 100 KB compressed budget', async ({ srv, js, css }) => {
  let total = 0;
  for (const path of ['/', js, css]) total += (await get(`${srv.url}${path}`, { 'accept-encoding': 'br' })).body.length;
  assert.ok(total < 100 * 1024, `${total} bytes`);
});

serving.run();

const encoding = suite('chooseEncoding');
encoding('prefers brotli, then gzip, and honours q=0', () => {
  assert.is(chooseEncoding('gzip, deflate, br'), 'br');
  assert.is(chooseEncoding('gzip'), 'gzip');
  assert.is(chooseEncoding('br;q=0, gzip;q=0.5'), 'gzip');
  assert.is(chooseEncoding('*'), 'gzip');
  assert.is(chooseEncoding('identity'), undefined);
  assert.is(chooseEncoding(''), undefined);
  assert.is(chooseEncoding('gzip;q=0'), undefined);
});
encoding.run();
