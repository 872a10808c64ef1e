import { createRequire } from 'node:module';
import type * as Uws from 'uWebSockets.js';

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';

/**
 * Loads the native uWebSockets.js binary. The package we install falls back, with only a console
 * warning, to a much slower implementation on top of `ws` when its binary cannot load (another
 * Node ABI, an older glibc). hooky would then run at a fraction of its speed while looking
 * healthy, so it refuses to start instead.
 */
export function loadUws(): typeof Uws {
  const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof Uws;
  // Only the native binary exports SSLApp and getParts; the `ws` shim has neither.
  if (typeof uws.SSLApp !== 'function' || typeof (uws as { getParts?: unknown }).getParts !== 'function') {
    throw new Error(
      'uWebSockets.js could not load its native binary and fell back to its slow `ws` shim ' +
        `(platform ${process.platform}-${process.arch}, Node ABI ${process.versions.modules}, UWS_USE_FALLBACK=${process.env.UWS_USE_FALLBACK ?? 'unset'}). ` +
        'hooky needs the native binary: use Node.js 20 on Linux x64/arm64 with glibc >= 2.27, and unset UWS_USE_FALLBACK.',
    );
  }
  return uws;
}

export const uws = loadUws();

/**
 * `app.listen(host, port, options, cb)`: the binary takes listen options after the port, which
 * its typings list only without a host. `LIBUS_LISTEN_EXCLUSIVE_PORT` (1) binds without
 * SO_REUSEPORT, so a port another process holds is refused; 0 shares it.
 */
export const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
export function listenOn(app: Uws.TemplatedApp, host: string, port: number, options: number, cb: (socket: Uws.us_listen_socket | false) => void): void {
  (app as unknown as { listen(host: string, port: number, options: number, cb: (socket: Uws.us_listen_socket | false) => void): void }).listen(host, port, options, cb);
}
