/**
 * Builds the browser page into `dist/page`: one bundle and one stylesheet named by their content
 * hash under `assets/`, an `index.html` that names them, and a gzip and a brotli copy of every
 * file so the server sends compressed bytes without compressing per request.
 * `node dist/src/page/build.js [outDir]` (run by `npm run build`).
 */
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const here = fileURLToPath(new URL('.', import.meta.url));
/** The folder with `main.ts`, `style.css` and `index.html`: this one, or src/page from dist/src/page. */
const sourceDir = here.includes('/dist/src/page') ? join(here, '../../../src/page') : here;
export const defaultPageDir = join(sourceDir, '../../dist/page');

export async function buildPage(outDir: string = defaultPageDir): Promise<void> {
  rmSync(outDir, { recursive: true, force: true });
  const assets = join(outDir, 'assets');
  mkdirSync(assets, { recursive: true });
  await build({
    entryPoints: [join(sourceDir, 'main.ts'), join(sourceDir, 'style.css')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['chrome111', 'firefox113', 'safari16.4'],
    platform: 'browser',
    outdir: assets,
    entryNames: '[name]-[hash]',
    // The SDK loads `ws` only in Node, when the platform has no WebSocket: never in a browser.
    external: ['ws'],
    legalComments: 'none',
    logLevel: 'warning',
  });
  const names = readdirSync(assets);
  const js = names.find((n) => /^main-.*\.js$/.test(n));
  const css = names.find((n) => /^style-.*\.css$/.test(n));
  if (!js || !css) throw new Error(`the page build produced ${names.join(', ')}`);
  const icon = readFileSync(join(sourceDir, 'icon.svg'));
  const iconName = `icon-${createHash('sha256').update(icon).digest('base64url').slice(0, 8)}.svg`;
  writeFileSync(join(assets, iconName), icon);
  const html = readFileSync(join(sourceDir, 'index.html'), 'utf8')
    .replace('{{js}}', `/assets/${js}`)
    .replace('{{css}}', `/assets/${css}`)
    .replace('{{icon}}', `/assets/${iconName}`);
  writeFileSync(join(outDir, 'index.html'), html);
  for (const file of [join(outDir, 'index.html'), ...readdirSync(assets).map((n) => join(assets, n))]) {
    const bytes = readFileSync(file);
    writeFileSync(`${file}.gz`, gzipSync(bytes, { level: 9 }));
    writeFileSync(`${file}.br`, brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }));
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildPage(process.argv[2]);
}
