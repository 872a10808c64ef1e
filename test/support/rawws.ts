import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

/**
 * A WebSocket client written by hand on a TCP socket, for what `ws` will not do: stop reading
 * altogether (a consumer that never reads), or write bytes that are not valid frames.
 */
export interface RawWebSocket {
  socket: Socket;
  /** Text frames received so far, parsed as JSON. */
  frames: { event: string; data: any }[];
  /** Waits for a frame with this event. */
  next(event: string, timeoutMs?: number): Promise<{ event: string; data: any }>;
  /** Sends one masked frame (opcode 1 = text, 2 = binary, 8 = close…). */
  sendFrame(payload: Buffer | string, opcode?: number): void;
  /** Bytes received after the handshake, frames and all. */
  received(): number;
  /** Resolves when the server closes the TCP connection. */
  ended: Promise<void>;
}

export function openRawWebSocket(port: number, path = '/ws', headers: Record<string, string> = {}): Promise<RawWebSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const frames: { event: string; data: any }[] = [];
    let waiters: { event: string; resolve: (f: { event: string; data: any }) => void }[] = [];
    let buf = Buffer.alloc(0);
    let handshaken = false;
    let total = 0;
    const ended = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('error', () => {});
    socket.on('connect', () => {
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Protocol: hooky.v1\r\n${extra}\r\n`,
      );
    });
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!handshaken) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        if (!head.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          return reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
        }
        handshaken = true;
        buf = buf.subarray(end + 4);
        resolve(client);
      }
      total += d.length;
      // Parse whole unmasked server frames; a partial one waits for more bytes.
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1]! & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        if (buf.length < at + len) return;
        const opcode = buf[0]! & 0x0f;
        const payload = buf.subarray(at, at + len);
        buf = buf.subarray(at + len);
        if (opcode !== 1) continue;
        const frame = JSON.parse(payload.toString('utf8')) as { event: string; data: any };
        frames.push(frame);
        const i = waiters.findIndex((w) => w.event === frame.event);
        if (i >= 0) waiters.splice(i, 1)[0]!.resolve(frame);
      }
    });
    const client: RawWebSocket = {
      socket,
      frames,
      next(event, timeoutMs = 5000) {
        const seen = frames.find((f) => f.event === event);
        if (seen) return Promise.resolve(seen);
        return new Promise((res, rej) => {
          const w = { event, resolve: (f: { event: string; data: any }) => (clearTimeout(t), res(f)) };
          const t = setTimeout(() => {
            waiters = waiters.filter((x) => x !== w);
            rej(new Error(`no "${event}" frame within ${timeoutMs} ms`));
          }, timeoutMs);
          waiters.push(w);
        });
      },
      sendFrame(payload, opcode = 1) {
        socket.write(encodeFrame(typeof payload === 'string' ? Buffer.from(payload) : payload, opcode));
      },
      received: () => total,
      ended,
    };
    socket.on('close', () => {
      if (!handshaken) reject(new Error('closed before the handshake'));
    });
  });
}

/** A masked client frame, FIN set (RFC 6455 §5.2). */
export function encodeFrame(payload: Buffer, opcode = 1, fin = true): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) head[1] = 0x80 | len;
  else if (len < 65536) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const body = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) body[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}
