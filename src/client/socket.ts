/**
 * Which WebSocket the client uses, and the little it adds to it. Nothing here imports a Node
 * module statically, so the SDK bundles for the browser on its own.
 */

/**
 * A WebSocket constructor: the browser's, `ws`'s, or any class with the same shape. `ws` and
 * classes extending it also take a third argument, the options, which carries the token's header.
 */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => object;

/** How a socket made by the class can carry the API token: a header, or only a subprotocol. */
export type TokenTransport = 'header' | 'protocol';

/**
 * `ws` (and any class extending it: it has `terminate`, which no browser WebSocket has) takes
 * `{headers}` as its third argument, so the token goes as `Authorization: Bearer`, the header
 * proxies and log tools know to redact. Every other class gets the `hooky.token.<token>`
 * subprotocol: a browser's WebSocket cannot set headers at all.
 */
export function tokenTransport(Base: WebSocketClass): TokenTransport {
  return typeof (Base.prototype as { terminate?: unknown } | undefined)?.terminate === 'function' ? 'header' : 'protocol';
}

/** What the client needs of a socket; both the browser's WebSocket and `ws` have it. */
export interface Socket {
  readonly readyState: number;
  addEventListener(type: 'close', listener: () => void): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: destroys the TCP socket without waiting for the peer's close frame. */
  terminate?(): void;
}

/** An upgrade the server answered with an HTTP status instead of 101. */
export interface Refusal {
  status: number;
  body: unknown;
  /** The handshake carried an Authorization header. */
  authorization: boolean;
}

/** The shape of a `ws` socket: an EventEmitter, which tells `unexpected-response` with the status. */
interface NodeSocket {
  on(event: 'error', listener: (err: Error) => void): void;
  on(event: 'unexpected-response', listener: (req: RequestLike, res: ResponseLike) => void): void;
}
interface RequestLike {
  getHeader?(name: string): unknown;
}
interface ResponseLike {
  statusCode?: number;
  on(event: 'data', listener: (chunk: Uint8Array) => void): void;
  on(event: 'end' | 'error', listener: () => void): void;
}

const maxBodyBytes = 4096;

/** The given class, else the platform's WebSocket, else (Node 20 has none) the `ws` package. */
export async function loadWebSocket(given?: WebSocketClass): Promise<WebSocketClass> {
  if (given) return given;
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  // Reached in Node only. A browser bundle resolves `ws` to its stub (its package.json "browser"
  // field) and never runs this line.
  return (await import('ws')).default as unknown as WebSocketClass;
}

/**
 * A subclass of `Base` that reports each socket it makes, and, for `ws`:
 * - reads the body of a refused upgrade, so `connect_error` can carry the status and the server's
 *   JSON (a browser exposes neither);
 * - keeps an `error` listener for the socket's whole life. reconnecting-websocket detaches its
 *   own listeners before it closes a socket, and `ws` throws an `error` emitted with no listener,
 *   which would crash the process on a timed-out attempt. While reconnecting-websocket listens it
 *   reports the error itself; this listener only keeps a late one from becoming uncaught.
 */
export function socketClass(
  Base: WebSocketClass,
  hooks: { created(s: Socket): void; refused(s: Socket, r: Refusal): void },
  headers?: Record<string, string>,
): WebSocketClass {
  const Mixin = Base as new (...args: any[]) => object;
  return class HookySocket extends Mixin {
    constructor(url: string, protocols?: string | string[]) {
      // `ws`'s options; passed only when there are headers, so no other class sees a third argument.
      if (headers) super(url, protocols, { headers });
      else super(url, protocols);
      const socket = this as unknown as Socket;
      hooks.created(socket);
      const node = this as unknown as Partial<NodeSocket>;
      if (typeof node.on !== 'function') return;
      node.on('error', () => undefined);
      node.on('unexpected-response', (req, res) => {
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on('data', (chunk) => {
          if (size < maxBodyBytes) chunks.push(chunk);
          size += chunk.length;
        });
        const done = () => {
          const authorization = req.getHeader?.('authorization') !== undefined;
          hooks.refused(socket, { status: res.statusCode ?? 0, body: parseBody(chunks), authorization });
          // Still CONNECTING: `ws` aborts the handshake, then emits `error` and `close`.
          socket.close();
        };
        res.on('end', done);
        res.on('error', done);
      });
    }
  };
}

function parseBody(chunks: Uint8Array[]): unknown {
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) bytes.set(c, (at += c.length) - c.length);
  const text = new TextDecoder().decode(bytes.subarray(0, maxBodyBytes));
  try {
    return JSON.parse(text);
  } catch {
    // Not every proxy in front of a server answers JSON; the text is still worth showing.
    return text;
  }
}
