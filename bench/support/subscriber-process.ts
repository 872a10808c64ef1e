/**
 * One load-generator process holding many hooky.v1 subscribers (raw `ws` clients). Driven over
 * IPC by subscribers.ts. Frames are not JSON-parsed: the webhook id, sequence number and send
 * time are found with Buffer.indexOf, so this process stays cheap per message.
 */
import WebSocket from 'ws';
import type { FromChild, ToChild } from './subscribers.js';

interface Sub {
  ws: WebSocket | undefined;
  webhookId: string;
  received: number;
  wrongRoom: number;
  duplicates: number;
  seen: Uint8Array;
}

const subs: Sub[] = [];
let latencies = new Float64Array(1 << 16);
let nLat = 0;
let maxSeq = 1 << 16;

const send = (m: FromChild) => process.send!(m);
const nowUs = () => {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
};

const kId = Buffer.from('"webhookId":"');
const kSeq = Buffer.from('\\"seq\\":');
const kT = Buffer.from('\\"t\\":');
const kNewRequest = Buffer.from('{"event":"new-request"');

function numberAt(buf: Buffer, at: number): number {
  let end = at;
  while (end < buf.length) {
    const c = buf[end]!;
    if ((c >= 48 && c <= 57) || c === 46 || c === 45) end++;
    else break;
  }
  return Number(buf.toString('latin1', at, end));
}

function onFrame(sub: Sub, buf: Buffer) {
  if (buf.compare(kNewRequest, 0, kNewRequest.length, 0, kNewRequest.length) !== 0) return;
  const now = nowUs();
  const i = buf.indexOf(kId);
  const idEnd = buf.indexOf(34, i + kId.length);
  const webhookId = buf.toString('latin1', i + kId.length, idEnd);
  if (webhookId !== sub.webhookId) {
    sub.wrongRoom++;
    return;
  }
  sub.received++;
  const s = buf.indexOf(kSeq);
  if (s >= 0) {
    const seq = numberAt(buf, s + kSeq.length);
    if (seq < maxSeq) {
      if (sub.seen[seq]) sub.duplicates++;
      sub.seen[seq] = 1;
    }
  }
  const t = buf.indexOf(kT);
  if (t >= 0) {
    if (nLat === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[nLat++] = (now - numberAt(buf, t + kT.length)) / 1000;
  }
}

function open(url: string, sub: Sub, localAddress: string | undefined, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'hooky.v1', {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: timeoutMs,
      ...(localAddress ? { localAddress } : {}),
    });
    sub.ws = ws;
    let joined = false;
    const timer = setTimeout(() => {
      if (!joined) fail(new Error('no "joined" in time'));
    }, timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      ws.terminate();
      reject(err);
    };
    ws.on('error', fail);
    ws.on('message', (data: Buffer) => {
      if (joined) return onFrame(sub, data);
      const text = data.toString();
      if (text.startsWith('{"event":"connected"')) ws.send(`{"event":"join","data":{"webhookId":"${sub.webhookId}"}}`);
      else if (text.startsWith('{"event":"joined"')) {
        joined = true;
        clearTimeout(timer);
        resolve();
      } else if (text.startsWith('{"event":"error"')) fail(new Error(text.slice(0, 200)));
    });
  });
}

async function openAll(msg: Extract<ToChild, { cmd: 'open' }>) {
  const started = performance.now();
  const errors: string[] = [];
  let failed = 0;
  const queue = msg.webhookIds.map((webhookId) => {
    const sub: Sub = { ws: undefined, webhookId, received: 0, wrongRoom: 0, duplicates: 0, seen: new Uint8Array(maxSeq) };
    subs.push(sub);
    return sub;
  });
  let next = 0;
  const worker = async () => {
    while (next < queue.length) {
      const sub = queue[next++]!;
      await open(msg.url, sub, msg.localAddress, msg.timeoutMs).catch((err: Error) => {
        failed++;
        if (errors.length < 5) errors.push(err.message);
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(msg.concurrency, queue.length) }, worker));
  send({ type: 'opened', ok: queue.length - failed, failed, errors, ms: performance.now() - started });
}

process.on('message', (msg: ToChild) => {
  switch (msg.cmd) {
    case 'open':
      maxSeq = msg.maxSeq;
      void openAll(msg);
      return;
    case 'reset':
      for (const s of subs) {
        s.received = s.wrongRoom = s.duplicates = 0;
        s.seen.fill(0);
      }
      nLat = 0;
      return;
    case 'report':
      send({
        type: 'report',
        subs: subs.map((s) => ({
          webhookId: s.webhookId,
          open: s.ws?.readyState === WebSocket.OPEN,
          received: s.received,
          unique: s.seen.reduce((a, b) => a + b, 0),
          wrongRoom: s.wrongRoom,
          duplicates: s.duplicates,
        })),
        latencies: latencies.slice(0, nLat),
      });
      return;
    case 'close': {
      let open = 0;
      for (const s of subs) {
        if (s.ws && s.ws.readyState !== WebSocket.CLOSED) {
          open++;
          s.ws.once('close', () => {
            if (--open === 0) process.exit(0);
          });
          s.ws.terminate();
        }
      }
      if (open === 0) process.exit(0);
      setTimeout(() => process.exit(0), 5000).unref();
      return;
    }
  }
});
send({ type: 'ready' });
