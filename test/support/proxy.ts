import { createServer, connect, type Socket } from 'node:net';

/**
 * A TCP proxy to stand between hooky and Postgres, so a test can take the database away:
 * `cut` (every connection dropped and the port closed, so new ones are refused as when
 * Postgres is down), `stall`
 * (connections stay open but nothing flows either way, as in a network partition) and
 * `restore`. `retarget` points new connections at another port, for a database that came back
 * somewhere else.
 */
export async function startProxy(targetHost: string, targetPort: number) {
  const sockets = new Set<Socket>();
  let mode: 'up' | 'cut' | 'stalled' = 'up';
  let port = targetPort;
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (mode === 'stalled') return; // accepted, never answered
    const upstream = connect(port, targetHost);
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const listenPort = (server.address() as { port: number }).port;
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port: listenPort,
    /** A postgres:// URL like `url` but pointing at this proxy. */
    via(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(listenPort);
      return u.toString();
    },
    cut() {
      mode = 'cut';
      server.close();
      dropAll();
    },
    stall() {
      mode = 'stalled';
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    /** Back to forwarding; connections held by a stall are dropped, as TCP would in the end. */
    async restore() {
      if (mode === 'stalled') dropAll();
      if (mode === 'cut') await new Promise<void>((r) => server.listen(listenPort, '127.0.0.1', r));
      mode = 'up';
    },
    retarget(newPort: number) {
      port = newPort;
    },
    close: () =>
      new Promise<void>((r) => {
        dropAll();
        if (server.listening) server.close(() => r());
        else r();
      }),
  };
}
