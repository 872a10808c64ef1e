import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError } from './errors.js';
import { send, sendError, statusLine, type Headers } from './http.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js';

/**
 * The browser page built by `npm run build` (src/page/build.ts), served from memory: read once at
 * start-up with the gzip and brotli copies the build made, so a request costs a lookup and a write.
 */
export interface StaticOptions {
  /** The built page; default `dist/page` of this package. */
  dir?: string;
}

interface Variant {
  body: Buffer;
  encoding?: 'br' | 'gzip';
}

interface Asset {
  identity: Variant;
  br: Variant | undefined;
  gzip: Variant | undefined;
  headers: Headers;
  etag: string;
}

const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
  '.png': 'image/png',
};

/**
 * Scripts and styles only from this origin, no inline script or style attribute, no plugin, no
 * frame: the page shows bytes strangers sent, so nothing in them may ever run. `connect-src 'self'`
 * covers ws:// and wss:// to the same host (CSP Level 3). `blob:` lets downloads and previews of
 * captured bodies open as object URLs; `data:` none.
 */
const csp = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const security: Headers = {
  'content-security-policy': csp,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

// Hashed names never change content: a year, and no revalidation (RFC 8246).
const immutable = 'public, max-age=31536000, immutable';

const here = fileURLToPath(new URL('.', import.meta.url));
export const defaultPageDir = join(here, here.includes('/dist/src') ? '../page' : '../dist/page');

function load(dir: string, file: string, cacheControl: string): Asset {
  const path = join(dir, file);
  const identity = readFileSync(path);
  const variant = (suffix: string, encoding: 'br' | 'gzip'): Variant | undefined =>
    existsSync(path + suffix) ? { body: readFileSync(path + suffix), encoding } : undefined;
  const etag = `"${createHash('sha256').update(identity).digest('base64url').slice(0, 22)}"`;
  return {
    identity: { body: identity },
    br: variant('.br', 'br'),
    gzip: variant('.gz', 'gzip'),
    etag,
    headers: { ...security, 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': cacheControl, etag, vary: 'accept-encoding' },
  };
}

/** The coding to send for an Accept-Encoding header: brotli, else gzip, else none (q=0 refuses). */
export function chooseEncoding(acceptEncoding: string): 'br' | 'gzip' | undefined {
  const accepted = new Set<string>();
  for (const part of acceptEncoding.toLowerCase().split(',')) {
    const [coding, ...params] = part.trim().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (coding && !(q !== undefined && Number(q.slice(2)) === 0)) accepted.add(coding.trim());
  }
  if (accepted.has('br')) return 'br';
  if (accepted.has('gzip') || accepted.has('*')) return 'gzip';
  return undefined;
}

function serve(asset: Asset, res: HttpResponse, req: HttpRequest): void {
  // Everything read from `req` before the first write: it is gone once the handler returns.
  const ifNoneMatch = req.getHeader('if-none-match');
  const coding = chooseEncoding(req.getHeader('accept-encoding'));
  if (ifNoneMatch !== '' && ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === asset.etag)) {
    res.cork(() => {
      res.writeStatus(statusLine(304));
      for (const name in asset.headers) res.writeHeader(name, asset.headers[name]!);
      res.endWithoutBody(0);
    });
    return;
  }
  const variant = (coding && asset[coding]) || asset.identity;
  const headers = variant.encoding ? { ...asset.headers, 'content-encoding': variant.encoding } : asset.headers;
  send({ res, done: false }, 200, variant.body, headers);
}

/**
 * `GET /` (the list of webhooks), `GET /inspect/:id` (the inspector: the same page, which reads
 * its path) and `GET /assets/*`. Registered before the catch-all 404. A server started from a
 * checkout that was never built answers `/` with 404 and says how to build.
 */
export function registerStatic(app: TemplatedApp, opts: StaticOptions = {}): void {
  const dir = opts.dir ?? defaultPageDir;
  if (!existsSync(join(dir, 'index.html'))) {
    const notBuilt = new HttpError('not_found', 'The page is not built: run `npm run build` (npm start does it)');
    app.get('/', (res) => sendError({ res, done: false }, notBuilt));
    return;
  }
  const page = load(dir, 'index.html', 'no-cache');
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(join(dir, 'assets'))) {
    if (name.endsWith('.gz') || name.endsWith('.br')) continue;
    assets.set(`/assets/${name}`, load(join(dir, 'assets'), name, immutable));
  }
  app.get('/', (res, req) => serve(page, res, req));
  app.get('/inspect/:id', (res, req) => serve(page, res, req));
  app.get('/assets/*', (res, req) => {
    const asset = assets.get(req.getUrl());
    if (asset) serve(asset, res, req);
    else sendError({ res, done: false }, new HttpError('not_found', 'No such asset'));
  });
}
