import { createServer } from 'node:net';
import { suite } from 'uvu';

/** Resources a test opened, closed in `after.each` (last opened, first closed) whatever the outcome. */
export interface CleanupCtx {
  cleanup: (() => Promise<unknown> | unknown)[];
}

export function withCleanup(name: string) {
  const test = suite<CleanupCtx>(name, { cleanup: [] });
  test.after.each(async (ctx) => {
    for (const close of ctx.cleanup.splice(0).reverse()) await close();
  });
  return test;
}

/** A loopback port free right now, for a server that must come back on the same port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
