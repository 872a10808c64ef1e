/**
 * The least a benchmark subscriber needs of a WebSocket client (RFC 6455), straight on a TCP
 * socket: the upgrade with one subprotocol, unmasked server frames cut out of the byte stream,
 * masked client frames, an answer to every ping. No extensions, no fragmented messages (uWS
 * sends neither unless asked), no UTF-8 validation.
 *
 * Why not `ws`: at 100,000 deliveries/s the load generator shares the machine's two cores with
 * the servers it measures. Each `ws` message goes through two stream layers and an event; here
 * the socket reads with `onread` into one buffer shared by every socket of the process (no
 * Buffer, no stream and no event per read) and the frames go to the callback directly, so the
 * subscribers take less of the CPU the servers under test are measured on.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawWs {
  /** Sends one text frame. */
  send(text: string): void;
  /** Drops the connection at once (no closing handshake). */
  terminate(): void;
  readonly open: boolean;
}

export interface RawWsHandlers {
  /** One text or binary frame's payload: a view into the read buffer, valid during the call only. */
  onFrame(payload: Buffer): void;
  /** The connection ended: refused, dropped, closed by the server, or terminate()d. */
  onClose(err?: Error): void;
}

// Opcodes (RFC 6455 §5.2).
const Op = { Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;

// Every read lands here and is consumed before the callback returns, so one serves all sockets.
const readBuffer = Buffer.allocUnsafe(256 * 1024);

export function openRawWs(url: string, protocol: string, localAddress: string | undefined, h: RawWsHandlers): RawWs {
  const u = new URL(url);
  const socket: Socket = connect({
    host: u.hostname,
    port: Number(u.port),
    ...(localAddress ? { localAddress } : {}),
    onread: {
      buffer: readBuffer,
      callback: (n) => {
        onData(readBuffer.subarray(0, n));
        return true;
      },
    },
  });
  socket.setNoDelay(true);
  let upgraded = false;
  let closed = false;
  let pending: Buffer | undefined;

  const close = (err?: Error) => {
    if (closed) return;
    closed = true;
    socket.destroy();
    h.onClose(err);
  };

  socket.on('connect', () => {
    socket.write(
      `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
    );
  });
  socket.on('error', (err) => close(err));
  socket.on('close', () => close());
  function onData(chunk: Buffer) {
    let buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    pending = undefined;
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        pending = Buffer.from(buf);
        return;
      }
      const head = buf.toString('latin1', 0, end);
      if (!head.startsWith('HTTP/1.1 101') || !head.toLowerCase().includes(`sec-websocket-protocol: ${protocol}`)) {
        return close(new Error(`upgrade refused: ${head.split('\r\n', 1)[0]}`));
      }
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    let at = 0;
    while (!closed && at + 2 <= buf.length) {
      const op = buf[at]! & 0x0f;
      let len = buf[at + 1]! & 0x7f;
      let start = at + 2;
      if (len === 126) {
        if (start + 2 > buf.length) break;
        len = buf.readUInt16BE(start);
        start += 2;
      } else if (len === 127) {
        if (start + 8 > buf.length) break;
        len = Number(buf.readBigUInt64BE(start));
        start += 8;
      }
      if (start + len > buf.length) break;
      const payload = buf.subarray(start, start + len);
      at = start + len;
      if (op === Op.Text || op === Op.Binary) h.onFrame(payload);
      else if (op === Op.Ping) frame(Op.Pong, payload);
      else if (op === Op.Close) return close();
    }
    // A frame cut by the read: kept (copied, the read buffer is reused) until the rest arrives.
    if (!closed && at < buf.length) pending = Buffer.from(buf.subarray(at));
  }

  /** A client frame: FIN, opcode, masked with a fresh key (RFC 6455 §5.3). */
  function frame(op: number, payload: Buffer) {
    if (closed) return;
    const len = payload.length;
    const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const out = Buffer.allocUnsafe(head + 4 + len);
    out[0] = 0x80 | op;
    if (head === 2) out[1] = 0x80 | len;
    else if (head === 4) {
      out[1] = 0x80 | 126;
      out.writeUInt16BE(len, 2);
    } else {
      out[1] = 0x80 | 127;
      out.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = randomBytes(4);
    mask.copy(out, head);
    for (let i = 0; i < len; i++) out[head + 4 + i] = payload[i]! ^ mask[i & 3]!;
    socket.write(out);
  }

  return {
    send: (text) => frame(Op.Text, Buffer.from(text)),
    terminate: () => close(),
    get open() {
      return upgraded && !closed;
    },
  };
}
