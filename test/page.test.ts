/**
 * The page in a real headless Chromium (Debian's, driven by playwright-core): `/`, the inspector,
 * its live list across a server restart, the body views, signatures, search, resend and export.
 * Without chromium this file prints one line and runs nothing (with CI=true that is a failure).
 * `HOOKY_SCREENSHOTS=1` also writes docs/inspector-{light,dark,narrow}.png (`=only`: nothing else).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildPage } from '../src/page/build.js';
import { chromiumPath, haveChromium, launchBrowser, type Browser } from './support/browser.js';
import { http } from './support/http.js';
import { eventually, figures } from './support/observe.js';
import { createWebhook, startServer, uniqueId, type TestServer } from './support/server.js';
import { freePort } from './support/suite.js';

interface Ctx {
  browser: Browser;
  srv: TestServer;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function capture(base: string, id: string, init: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {}): Promise<string> {
  const res = await http(init.method ?? 'POST', `${base}/h/${id}${init.path ?? ''}`, init.body === undefined ? undefined : Buffer.from(init.body), init.headers ?? {});
  assert.is(res.status, 200, res.text);
  return (JSON.parse(res.text) as { id: string }).id;
}

/** `n` captures, `concurrency` at a time, over keep-alive connections; ids in capture order. */
async function captureMany(base: string, id: string, n: number, concurrency = 32, body = (i: number) => `{"n":${i}}`): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const res = await fetch(`${base}/h/${id}/bulk`, { method: 'POST', body: body(i), headers: { 'content-type': 'application/json' } });
        assert.is(res.status, 200);
        await res.arrayBuffer();
      }
    }),
  );
}

/** The ids the inspector holds, newest first (the debugging hook the README documents). */
const listedIds = (page: Page) => page.evaluate(() => (window as unknown as { hookyInspector?: { ids(): string[] } }).hookyInspector?.ids() ?? []);

async function openInspector(page: Page, base: string, id: string) {
  page.on('pageerror', (err) => process.stderr.write(`page error: ${err.stack ?? err.message}\n`));
  await page.goto(`${base}/inspect/${id}`);
  await page.waitForSelector('[data-connection-state="connected"]');
  await page.waitForFunction(() => 'hookyInspector' in window);
}

async function selectRow(page: Page, requestId: string) {
  await page.click(`[data-request-id="${requestId}"]`);
  await page.waitForSelector(`.detail[data-detail-id="${requestId}"] .body-root > *`);
}

function setup(name: string, env: Record<string, string> = {}) {
  const test = suite<Ctx>(name, {} as Ctx);
  test.before(async (ctx) => {
    ctx.srv = await startServer(env);
    ctx.browser = await launchBrowser();
  });
  test.after(async (ctx) => {
    await ctx.browser?.close();
    await ctx.srv?.close();
  });
  return test;
}

if (!haveChromium()) {
  if (process.env.CI === 'true') {
    const missing = suite('browser tests');
    missing('run in CI, where chromium must be installed', () => assert.unreachable(`${chromiumPath} is missing: apt-get install -y chromium`));
    missing.run();
  } else {
    process.stdout.write(`page.test.ts: browser tests not run: ${chromiumPath} not found (apt-get install -y chromium, or HOOKY_CHROMIUM=/path/to/chromium npm test)\n`);
  }
} else {
  await buildPage();
  if (process.env.HOOKY_SCREENSHOTS !== 'only') registerSuites();
  if (process.env.HOOKY_SCREENSHOTS) {
    const shots = setup('screenshots');
    shots('of the inspector, light, dark and narrow, into docs/', ({ browser, srv }) => screenshots(browser, srv));
    shots.run();
  }
}

function registerSuites() {
  // --- / ----------------------------------------------------------------------------------
  const home = setup('/ (the webhook list)');
  home('creates a webhook with a custom response and opens its inspector', async ({ browser, srv }) => {
    const page = await browser.context.newPage();
    const id = uniqueId('page');
    await page.goto(`${srv.url}/`);
    await page.fill('input[name="id"]', id);
    await page.click('details summary');
    await page.fill('input[name="status"]', '202');
    await page.fill('textarea[name="body"]', 'thanks');
    await page.click('form.create button[type="submit"]');
    await page.waitForURL(`${srv.url}/inspect/${id}`);
    await page.waitForSelector('[data-connection-state="connected"]');
    assert.match(await page.textContent('.capture-url') ?? '', `/h/${id}`);
    const res = await http('POST', `${srv.url}/h/${id}`, 'x');
    assert.is(res.status, 202);
    assert.is(res.text, 'thanks');
    await page.goto(`${srv.url}/`);
    await page.waitForSelector(`[data-webhook-id="${id}"]`);
    await page.close();
  });
  home.run();

  // --- the live list ----------------------------------------------------------------------
  const live = setup('the inspector list');
  live('shows captures within a second, newest first, each once', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    const sent: string[] = [];
    for (let i = 0; i < 10; i++) {
      const at = Date.now();
      sent.push(await capture(srv.url, id, { path: `/orders/${i}?x=${i}`, headers: { 'content-type': 'application/json' }, body: `{"i":${i}}` }));
      await page.waitForSelector(`[data-request-id="${sent[i]}"]`, { timeout: 1000 });
      assert.ok(Date.now() - at < 1000);
    }
    // Rows are positioned, not ordered, in the DOM: read them top to bottom as drawn.
    const rows = await page.$$eval('.list .row:not([hidden])', (els) =>
      els.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top).map((e) => e.getAttribute('data-request-id')),
    );
    assert.equal(rows, [...sent].reverse());
    assert.equal(await listedIds(page), [...sent].reverse());
    assert.match((await page.textContent(`[data-request-id="${sent[9]}"]`)) ?? '', '/orders/9?x=9');
    await page.close();
  });

  live('keeps up with 200 captures at 100/s, in order, once (capture-to-row figures)', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await page.evaluate(() => {
      const seen: Record<string, number> = {};
      (window as unknown as { seen: typeof seen }).seen = seen;
      const note = (el: Element) => {
        const rid = el.getAttribute('data-request-id');
        if (rid && !(rid in seen)) seen[rid] = Date.now();
      };
      new MutationObserver((records) => records.forEach((r) => (r.type === 'attributes' ? note(r.target as Element) : r.addedNodes.forEach((n) => n instanceof Element && note(n))))).observe(document.querySelector('.list')!, {
        subtree: true,
        childList: true,
        attributes: true,
        attributeFilter: ['data-request-id'],
      });
    });
    const sentAt = new Map<string, number>();
    const ackMs: number[] = [];
    const pending: Promise<void>[] = [];
    const start = Date.now();
    for (let i = 0; i < 200; i++) {
      const due = start + i * 10;
      if (due > Date.now()) await sleep(due - Date.now());
      const at = Date.now();
      pending.push(
        fetch(`${srv.url}/h/${id}/rate`, { method: 'POST', body: String(i) }).then(async (r) => {
          const rid = ((await r.json()) as { id: string }).id;
          sentAt.set(rid, at);
          ackMs.push(Date.now() - at);
        }),
      );
    }
    await Promise.all(pending);
    const ids = [...sentAt.keys()].sort();
    await eventually(async () => (await listedIds(page)).length === 200, 10_000, '200 rows');
    assert.equal(await listedIds(page), [...ids].reverse());
    const seen = await page.evaluate(() => (window as unknown as { seen: Record<string, number> }).seen);
    // A row is only drawn while it is on screen: one that scrolled past during a stall of the
    // page longer than the screen's worth of arrivals was never visible, and is counted apart.
    const lat = ids.filter((rid) => rid in seen).map((rid) => seen[rid]! - sentAt.get(rid)!).sort((a, b) => a - b);
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)];
    ackMs.sort((a, b) => a - b);
    figures('page: capture to row visible, 200 at 100/s', { drawn: lat.length, p50ms: pct(50), p99ms: pct(99), maxms: lat[lat.length - 1], captureAnsweredP50ms: ackMs[99], captureAnsweredP99ms: ackMs[197] });
    await page.close();
  });

  live('pages through older requests without duplicates and deletes one and all', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    await captureMany(srv.url, id, 420, 8);
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await eventually(async () => (await listedIds(page)).length === 100, 5000, 'first page');
    await page.click('button.load-older');
    await eventually(async () => (await listedIds(page)).length === 350, 5000, 'second page');
    await page.click('button.load-older');
    // Disabled while a page loads, too: the end of the list is the button saying so.
    await page.waitForSelector('button.load-older:disabled:has-text("No older requests")');
    const ids = await listedIds(page);
    assert.is(ids.length, 420);
    assert.is(new Set(ids).size, 420);
    assert.equal(ids, [...ids].sort().reverse());
    page.on('dialog', (d) => void d.accept());
    await selectRow(page, ids[0]!);
    await page.click('.detail-head button.danger');
    await eventually(async () => !(await listedIds(page)).includes(ids[0]!), 3000, 'row removed');
    assert.is((await http('GET', `${srv.url}/api/webhooks/${id}/requests/${ids[0]}`)).status, 404);
    await page.click('.list-foot button.danger');
    await eventually(async () => (await listedIds(page)).length === 0, 3000, 'list emptied');
    const left = JSON.parse((await http('GET', `${srv.url}/api/webhooks/${id}/requests`)).text) as { requests: unknown[] };
    assert.is(left.requests.length, 0);
    await page.close();
  });

  live('j/k and the arrow keys move the selection', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const a = await capture(srv.url, id, { body: 'a' });
    const b = await capture(srv.url, id, { body: 'b' });
    const c = await capture(srv.url, id, { body: 'c' });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await page.waitForSelector(`[data-request-id="${c}"].selected`);
    await page.keyboard.press('j');
    await page.waitForSelector(`[data-request-id="${b}"].selected`);
    await page.keyboard.press('ArrowDown');
    await page.waitForSelector(`[data-request-id="${a}"].selected`);
    await page.keyboard.press('k');
    await page.waitForSelector(`[data-request-id="${b}"].selected`);
    await page.keyboard.press('ArrowUp');
    await page.waitForSelector(`[data-request-id="${c}"].selected`);
    await page.close();
  });
  live.run();

  // --- the detail pane ---------------------------------------------------------------------
  const detail = setup('the detail pane');
  detail('shows a binary body as hex and downloads it as received', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const bytes = new Uint8Array([0, 1, 2, 0xff, 0xfe, 0x41, 0x42, 0x80]);
    const rid = await capture(srv.url, id, { path: '/bin', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await selectRow(page, rid);
    const hex = (await page.textContent('pre.body.hex')) ?? '';
    assert.match(hex, '00000000  00 01 02 ff fe 41 42 80');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('button.download-body')]);
    assert.equal(new Uint8Array(readFileSync((await download.path())!)), bytes);
    await page.close();
  });

  detail('shows each multipart part and downloads a binary part byte-exact', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const file = randomBytes(3000);
    const boundary = 'hookyBoundary7MA4YWxk';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello part\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="upload"; filename="blob.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      file,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const rid = await capture(srv.url, id, { headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await selectRow(page, rid);
    assert.match((await page.textContent('.part[data-part="0"]')) ?? '', 'hello part');
    assert.match((await page.textContent('.part[data-part="1"]')) ?? '', 'blob.bin');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('.part[data-part="1"] .download-part')]);
    assert.is(download.suggestedFilename(), 'blob.bin');
    assert.ok(Buffer.from(readFileSync((await download.path())!)).equals(file), 'the downloaded part is the sent bytes');
    await page.close();
  });

  detail('pretty-prints JSON keeping every token as sent, and decodes gzip for display only', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const json = '{"amount":1.50,"big":12345678901234567890,"s":"\\u00e9"}';
    const rid = await capture(srv.url, id, { headers: { 'content-type': 'application/json' }, body: json });
    const { gzipSync } = await import('node:zlib');
    const gz = gzipSync('compressed hello');
    const gid = await capture(srv.url, id, { headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' }, body: gz });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await selectRow(page, rid);
    assert.is(await page.textContent('.body-view pre'), '{\n  "amount": 1.50,\n  "big": 12345678901234567890,\n  "s": "\\u00e9"\n}');
    await page.click('.tabs button[data-view="raw"]');
    assert.is(await page.textContent('.body-view pre'), json);
    await selectRow(page, gid);
    await page.waitForSelector('.body-root .note');
    assert.is(await page.textContent('.body-view pre'), 'compressed hello');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('button.download-body')]);
    assert.ok(Buffer.from(readFileSync((await download.path())!)).equals(gz), 'the download is the stored gzip');
    await page.close();
  });

  detail('shows a large body in full, a chunk at a time, and XML indented', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const line = 'lorem ipsum dolor sit amet 0123456789\n';
    const text = line.repeat(8000) + 'THE-END';
    const rid = await capture(srv.url, id, { headers: { 'content-type': 'text/plain' }, body: text });
    const xid = await capture(srv.url, id, { headers: { 'content-type': 'application/xml' }, body: '<a><b>1</b><c x="y"/></a>' });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    await selectRow(page, rid);
    assert.match((await page.textContent('.body-view .more')) ?? '', `Showing 65,536 of ${text.length.toLocaleString('en-US')} characters`);
    await page.click('.body-view .more button');
    assert.is(await page.textContent('.body-view pre'), text);
    await selectRow(page, xid);
    assert.is(await page.textContent('.body-view pre'), '<a>\n  <b>1</b>\n  <c x="y"/>\n</a>');
    await page.close();
  });

  detail('checks Stripe and GitHub signatures in the browser: valid, and invalid once tampered', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const secret = 'whsec_page_test_secret';
    const body = '{"id":"evt_1","type":"charge.succeeded"}';
    const t = Math.floor(Date.now() / 1000);
    const stripeSig = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
    const stripe = await capture(srv.url, id, { headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${stripeSig}` }, body });
    const ghSig = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    const github = await capture(srv.url, id, { headers: { 'content-type': 'application/json', 'x-hub-signature-256': ghSig }, body });
    const tampered = await capture(srv.url, id, { headers: { 'content-type': 'application/json', 'x-hub-signature-256': ghSig }, body: body.replace('succeeded', 'refunded') });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    const verdict = async (rid: string) => {
      await selectRow(page, rid);
      await page.fill('input[name="secret"]', secret);
      await page.click('.signature button[type="submit"]');
      await page.waitForSelector('.verdict[data-verdict]');
      return page.getAttribute('.verdict', 'data-verdict');
    };
    assert.is(await verdict(stripe), 'valid');
    assert.is(await page.inputValue('select[name="scheme"]'), 'stripe');
    assert.is(await verdict(github), 'valid');
    assert.is(await verdict(tampered), 'invalid');
    await page.close();
  });
  detail('checks Standard Webhooks, Shopify, Slack and a generic HMAC header, and flags a stale Stripe timestamp', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const body = '{"event":"order.paid","total":"12.30"}';
    const t = Math.floor(Date.now() / 1000);
    const key = randomBytes(24);
    const stdSecret = `whsec_${key.toString('base64')}`;
    const std = await capture(srv.url, id, {
      headers: { 'content-type': 'application/json', 'webhook-id': 'msg_1', 'webhook-timestamp': String(t), 'webhook-signature': `v1,${createHmac('sha256', key).update(`msg_1.${t}.${body}`).digest('base64')}` },
      body,
    });
    const secret = 'shpss_or_slack_secret';
    const shopify = await capture(srv.url, id, { headers: { 'x-shopify-hmac-sha256': createHmac('sha256', secret).update(body).digest('base64') }, body });
    const slack = await capture(srv.url, id, { headers: { 'x-slack-request-timestamp': String(t), 'x-slack-signature': `v0=${createHmac('sha256', secret).update(`v0:${t}:${body}`).digest('hex')}` }, body });
    const generic = await capture(srv.url, id, { headers: { 'x-signature': createHmac('sha256', secret).update(body).digest('hex') }, body });
    const old = t - 3600;
    const stale = await capture(srv.url, id, { headers: { 'stripe-signature': `t=${old},v1=${createHmac('sha256', secret).update(`${old}.${body}`).digest('hex')}` }, body });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    const verdict = async (rid: string, s: string) => {
      await selectRow(page, rid);
      await page.fill('input[name="secret"]', s);
      await page.click('.signature button[type="submit"]');
      await page.waitForSelector('.verdict[data-verdict]');
      return [await page.inputValue('select[name="scheme"]'), await page.getAttribute('.verdict', 'data-verdict')];
    };
    assert.equal(await verdict(std, stdSecret), ['standard', 'valid']);
    assert.equal(await verdict(std, `whsec_${randomBytes(24).toString('base64')}`), ['standard', 'invalid']);
    assert.equal(await verdict(shopify, secret), ['shopify', 'valid']);
    assert.equal(await verdict(slack, secret), ['slack', 'valid']);
    assert.equal(await verdict(generic, secret), ['generic', 'valid']);
    assert.equal(await verdict(generic, 'wrong'), ['generic', 'invalid']);
    assert.equal(await verdict(stale, secret), ['stripe', 'skew']);
    await page.close();
  });

  detail('copy as curl reproduces the method, path, query, headers and exact bytes', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const bodies = [Buffer.from("it's \"quoted\" $HOME `x` \\ \n\ttext é"), Buffer.concat([Buffer.from([0, 1, 0xff, 0x27]), randomBytes(200)])];
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.url });
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    const { execFile } = await import('node:child_process');
    for (const body of bodies) {
      // The query as sent, byte for byte: its order, a bare flag, %20 and + (what a signature over the URL covers).
      const rid = await capture(srv.url, id, { method: 'PATCH', path: "/it's/here?b=1&a=2&b=3&flag&sig=a%2Fb%20c&w=two+words", headers: { 'content-type': 'application/octet-stream', 'x-custom': "v'1" }, body });
      await selectRow(page, rid);
      await page.click('.detail-head button:text("Copy as curl")');
      const cmd = await page.evaluate(() => navigator.clipboard.readText());
      const out = await new Promise<string>((resolve, reject) => execFile('bash', ['-c', cmd], (err, stdout) => (err ? reject(err) : resolve(stdout))));
      const again = (JSON.parse(out) as { id: string }).id;
      const [a, b] = await Promise.all([rid, again].map(async (r) => JSON.parse((await http('GET', `${srv.url}/api/webhooks/${id}/requests/${r}`)).text) as Record<string, unknown>));
      for (const field of ['method', 'path', 'rawQuery', 'queryParams', 'body', 'bodyEncoding', 'size']) assert.equal(b![field], a![field], field);
      assert.is((b!.headers as Record<string, string>)['x-custom'], "v'1");
      await page.waitForSelector(`[data-request-id="${again}"]`);
    }
    await page.close();
  });
  detail.run();

  // --- a server restart ------------------------------------------------------------------------
  const restart = suite<{ browser: Browser; srv?: TestServer }>('the inspector across a server restart', {} as never);
  restart.before(async (ctx) => {
    ctx.browser = await launchBrowser();
  });
  restart.after(async (ctx) => {
    await ctx.browser?.close();
    await ctx.srv?.close();
  });
  restart('goes reconnecting then connected, and lists every acknowledged capture once', async (ctx) => {
    const port = await freePort();
    ctx.srv = await startServer({ PORT: String(port) });
    const base = ctx.srv.url;
    const { id } = await createWebhook(base);
    const page = await ctx.browser.context.newPage();
    await openInspector(page, base, id);
    await page.evaluate(() => {
      const el = document.querySelector('[data-connection-state]')!;
      const states: string[] = [el.getAttribute('data-connection-state')!];
      (window as unknown as { states: string[] }).states = states;
      new MutationObserver(() => {
        const s = el.getAttribute('data-connection-state')!;
        if (states[states.length - 1] !== s) states.push(s);
      }).observe(el, { attributes: true });
    });
    const acked: string[] = [];
    let sending = true;
    let refused = 0;
    const sender = (async () => {
      while (sending) {
        try {
          const res = await http('POST', `${base}/h/${id}/during`, 'tick');
          if (res.status === 200) acked.push((JSON.parse(res.text) as { id: string }).id);
          else refused++;
        } catch {
          refused++;
        }
        await sleep(25);
      }
    })();
    await eventually(() => acked.length >= 10, 5000, 'captures before the restart');
    const stoppedAt = Date.now();
    await ctx.srv.close();
    await sleep(300);
    ctx.srv = await startServer({ PORT: String(port) });
    const upAfter = Date.now() - stoppedAt;
    await page.waitForSelector('[data-connection-state="connected"]', { timeout: 20_000 });
    const reconnectedAfter = Date.now() - stoppedAt;
    const before = acked.length;
    await eventually(() => acked.length >= before + 10, 5000, 'captures after the restart');
    sending = false;
    await sender;
    await eventually(async () => {
      const listed = new Set(await listedIds(page));
      return acked.every((a) => listed.has(a));
    }, 10_000, 'every acknowledged capture listed');
    const ids = await listedIds(page);
    assert.is(new Set(ids).size, ids.length, 'no request listed twice');
    assert.equal(ids, [...ids].sort().reverse(), 'newest first');
    const states = await page.evaluate(() => (window as unknown as { states: string[] }).states);
    assert.equal(states.slice(-2), ['reconnecting', 'connected'], states.join(' → '));
    assert.match((await page.textContent('[data-connection-state]')) ?? '', /resumed/);
    figures('page: server restart', { serverDownMs: upAfter, indicatorConnectedAfterMs: reconnectedAfter, acked: acked.length, refusedDuringRestart: refused, states: states.join('>'), indicator: await page.textContent('[data-connection-state]') });
    await page.close();
  });
  restart.run();

  // --- the API token ----------------------------------------------------------------------------
  const token = setup('the inspector with HOOKY_API_TOKEN', { HOOKY_API_TOKEN: 'page-test-token-1' });
  token('asks for the token, keeps it for the tab, and streams with it', async ({ browser, srv }) => {
    const id = uniqueId('tok');
    const made = await http('POST', `${srv.url}/api/webhooks`, JSON.stringify({ id }), { authorization: 'Bearer page-test-token-1' });
    assert.is(made.status, 201);
    const page = await browser.context.newPage();
    await page.goto(`${srv.url}/inspect/${id}`);
    await page.fill('.token-dialog input[name="token"]', 'page-test-token-1');
    await page.press('.token-dialog input[name="token"]', 'Enter');
    await page.waitForSelector('[data-connection-state="connected"]');
    const rid = await capture(srv.url, id, { body: 'with token' });
    await page.waitForSelector(`[data-request-id="${rid}"]`);
    assert.is(await page.evaluate(() => sessionStorage.getItem('hooky.token')), 'page-test-token-1');
    await page.close();
  });
  token.run();

  // --- a live connection refused (a browser cannot see why) -------------------------------------
  const refused = setup('the inspector when /ws is refused', { HOOKY_ALLOWED_ORIGINS: 'https://elsewhere.example' });
  refused('still lists the stored requests, and says the WebSocket never got through', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const rids: string[] = [];
    for (let i = 0; i < 3; i++) rids.push(await capture(srv.url, id, { body: `stored ${i}` }));
    const page = await browser.context.newPage();
    page.on('pageerror', (err) => process.stderr.write(`page error: ${err.stack ?? err.message}\n`));
    await page.goto(`${srv.url}/inspect/${id}`);
    await eventually(async () => (await listedIds(page)).length === 3, 10_000, 'the stored requests');
    assert.equal((await listedIds(page)).sort(), [...rids].sort());
    await page.waitForFunction(() => document.querySelector('[data-connection-state]')?.textContent?.includes('never connected'), undefined, { timeout: 20_000 });
    assert.is(await page.getAttribute('[data-connection-state]', 'data-connection-state'), 'reconnecting');
    await page.close();
  });
  refused.run();

  // --- search, resend, export: routes of the REST API -------------------------------------------
  const rest = setup('search, resend and export from the page');
  rest('search finds a body string on an older page', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const needle = `needle-${randomBytes(4).toString('hex')}`;
    const old = await capture(srv.url, id, { headers: { 'content-type': 'application/json' }, body: `{"note":"${needle}"}` });
    await captureMany(srv.url, id, 150, 8);
    const probe = JSON.parse((await http('GET', `${srv.url}/api/webhooks/${id}/requests?q=${needle}&limit=5`)).text) as { requests: unknown[] };
    assert.is(probe.requests.length, 1, 'the server finds the needle over every stored request');
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    assert.not.ok((await listedIds(page)).includes(old), 'the needle is not on the first page');
    await page.fill('input[name="q"]', needle);
    await page.press('input[name="q"]', 'Enter');
    await eventually(async () => (await listedIds(page)).join() === old, 5000, 'the search result');
    await page.click('.filters button[type="button"]');
    await eventually(async () => (await listedIds(page)).length === 100, 5000, 'the list back');
    await page.close();
  });

  rest('resend reaches a local target byte-exact and shows its answer', async ({ browser }) => {
    const got: { method: string; url: string; headers: IncomingHttpHeaders; body: Buffer }[] = [];
    const target = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(201, { 'content-type': 'text/plain', 'x-target': 'yes' }).end('target says hi');
      });
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    const port = (target.address() as AddressInfo).port;
    const srv = await startServer({ HOOKY_RESEND_ALLOW: `http://127.0.0.1:${port}` });
    try {
      const { id } = await createWebhook(srv.url);
      const body = Buffer.concat([Buffer.from('{"a":1}'), randomBytes(64)]);
      const rid = await capture(srv.url, id, { method: 'PUT', path: '/deep/path?x=1&y=2', headers: { 'content-type': 'application/octet-stream', 'x-custom': 'kept' }, body });
      const probe = await http('POST', `${srv.url}/api/webhooks/${id}/requests/${rid}/resend`, JSON.stringify({ url: `http://127.0.0.1:${port}` }), { 'content-type': 'application/json' });
      assert.is(probe.status, 200, probe.text);
      got.length = 0;
      const page = await browser.context.newPage();
      await openInspector(page, srv.url, id);
      await selectRow(page, rid);
      await page.fill('input[name="target"]', `http://127.0.0.1:${port}`);
      await page.click('.resend button[type="submit"]');
      await page.waitForSelector('.resend-status');
      assert.is(await page.textContent('.resend-status'), '201');
      assert.match((await page.textContent('.resend-result')) ?? '', 'target says hi');
      assert.is(got.length, 1);
      assert.is(got[0]!.method, 'PUT');
      assert.is(got[0]!.url, '/deep/path?x=1&y=2');
      assert.is(got[0]!.headers['x-custom'], 'kept');
      assert.ok(got[0]!.body.equals(body), 'the target got the exact bytes');
      await page.close();
    } finally {
      target.close();
      await srv.close();
    }
  });

  rest('export downloads HAR 1.2 and NDJSON of every request', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const ids = [await capture(srv.url, id, { body: 'one' }), await capture(srv.url, id, { body: 'two' })];
    const probe = await http('GET', `${srv.url}/api/webhooks/${id}/export?format=har`);
    assert.is(probe.status, 200);
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    const [har] = await Promise.all([page.waitForEvent('download'), page.click('a[href$="format=har"]')]);
    const log = (JSON.parse(readFileSync((await har.path())!, 'utf8')) as { log: { version: string; entries: unknown[] } }).log;
    assert.is(log.version, '1.2');
    assert.is(log.entries.length, 2);
    const [nd] = await Promise.all([page.waitForEvent('download'), page.click('a[href$="format=ndjson"]')]);
    const lines = readFileSync((await nd.path())!, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
    assert.equal([...lines].sort(), [...ids].sort());
    await page.close();
  });
  rest.run();

  // --- 10,000 requests -------------------------------------------------------------------------
  const big = setup('the inspector with 10,000 requests');
  big('keeps a couple of dozen rows in the DOM and scrolls (memory and frame figures)', async ({ browser, srv }) => {
    const { id } = await createWebhook(srv.url);
    const t0 = Date.now();
    await captureMany(srv.url, id, 10_000, 48);
    const captureMs = Date.now() - t0;
    const page = await browser.context.newPage();
    await openInspector(page, srv.url, id);
    const t1 = Date.now();
    for (;;) {
      await page.waitForSelector('button.load-older:enabled, button.load-older:text("No older requests")', { timeout: 10_000 });
      if ((await page.textContent('button.load-older')) === 'No older requests') break;
      await page.click('button.load-older');
    }
    const loadMs = Date.now() - t1;
    const ids = await listedIds(page);
    assert.is(ids.length, 10_000);
    assert.is(new Set(ids).size, 10_000);
    const rows = await page.$$eval('.list .row', (els) => els.length);
    assert.ok(rows < 80, `${rows} row elements`);
    const frames = await page.evaluate(async () => {
      const list = document.querySelector('.list')!;
      const times: number[] = [];
      let last = performance.now();
      for (let i = 0; i < 120; i++) {
        list.scrollTop += 400;
        await new Promise(requestAnimationFrame);
        const now = performance.now();
        times.push(now - last);
        last = now;
      }
      return times.sort((a, b) => a - b);
    });
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('HeapProfiler.collectGarbage');
    await cdp.send('Performance.enable');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const m = (name: string) => metrics.find((x) => x.name === name)?.value ?? NaN;
    const transferred = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      const assets = (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).filter((r) => r.initiatorType !== 'fetch' && r.initiatorType !== 'xmlhttprequest');
      return { html: nav.transferSize, assets: assets.map((r) => [r.name.replace(location.origin, ''), r.transferSize, r.decodedBodySize]) };
    });
    figures('page: 10,000 requests', {
      captureMs,
      loadAllMs: loadMs,
      rowElements: rows,
      domNodes: m('Nodes'),
      jsHeapUsedMiB: +(m('JSHeapUsedSize') / 1024 / 1024).toFixed(1),
      scrollFrameP50ms: +frames[60]!.toFixed(1),
      scrollFrameP99ms: +frames[118]!.toFixed(1),
      transferred,
    });
    await page.close();
  });
  big.run();
}

/** docs/inspector-{light,dark,narrow}.png: a few kinds of request, the last three arriving live. */
async function screenshots(browser: Browser, srv: TestServer) {
  const secret = 'whsec_demo';
  const stripeRequest = () => {
    const t = Math.floor(Date.now() / 1000);
    const body = '{"id":"evt_1QxZ","type":"payment_intent.succeeded","data":{"object":{"amount":2000,"currency":"eur"}}}';
    return { path: '/stripe', headers: { 'content-type': 'application/json', 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)', 'stripe-signature': `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}` }, body };
  };
  const github = '{"ref":"refs/heads/main","commits":3}';
  const before = [
    { path: '/github?delivery=1', headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': 'sha256=' + createHmac('sha256', secret).update(github).digest('hex') }, body: github },
    { path: '/form', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=Ada+Lovelace&lang=en' },
  ];
  const live = () => [
    { path: '/upload', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(96) },
    { method: 'PUT', path: '/orders/42?expand=items', headers: { 'content-type': 'application/xml' }, body: '<order><id>42</id><total>99.50</total></order>' },
    stripeRequest(),
  ];
  for (const [scheme, file, size] of [
    ['light', 'inspector-light.png', { width: 1280, height: 860 }],
    ['dark', 'inspector-dark.png', { width: 1280, height: 860 }],
    ['light', 'inspector-narrow.png', { width: 390, height: 844 }],
  ] as const) {
    const { id } = await createWebhook(srv.url, { id: `stripe-dev-${randomBytes(2).toString('hex')}` });
    for (const b of before) await capture(srv.url, id, b);
    const page = await browser.context.newPage();
    await page.setViewportSize(size);
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto(`${srv.url}/`);
    await page.evaluate(([w, s]) => localStorage.setItem(`hooky.secret.${w}.stripe`, s!), [id, secret]);
    await openInspector(page, srv.url, id);
    // Follow off while they arrive, so two stay unread; then the newest is opened.
    await page.click('.follow input');
    let last = '';
    for (const b of live()) last = await capture(srv.url, id, b);
    await page.click(`[data-request-id="${last}"]`);
    await page.waitForSelector(`[data-request-id="${last}"].selected`);
    await page.waitForSelector('.verdict[data-verdict]');
    if (file === 'inspector-narrow.png') await page.click('.back');
    await page.screenshot({ path: new URL(`../docs/${file}`, import.meta.url).pathname });
    await page.close();
  }
}
