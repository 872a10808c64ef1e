import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's chromium (apt-get install chromium); HOOKY_CHROMIUM names another binary. */
export const chromiumPath = process.env.HOOKY_CHROMIUM ?? '/usr/bin/chromium';
export const haveChromium = () => existsSync(chromiumPath);

// No sandbox (containers run as root), no GPU, nothing that phones home or updates itself.
const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A headless Chromium with a fresh profile, removed on close. */
export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'hooky-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: flags,
    viewport: { width: 1280, height: 860 },
    acceptDownloads: true,
  });
  // tsx compiles the tests with esbuild's keepNames, which wraps named functions in __name(): the
  // functions the tests hand to page.evaluate() need it defined in the page too.
  await context.addInitScript('globalThis.__name = (f) => f');
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
