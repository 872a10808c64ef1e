/**
 * One load-generator process holding many hooky.v1 subscribers (wsclient.ts: WebSocket straight
 * on a TCP socket). Driven over IPC by subscribers.ts. Frames are not JSON-parsed: the webhook
 * id, sequence number and send time are found with Buffer.indexOf, so this process stays cheap
 * per message.
 */
import type { FromChild, ToChild } from './subscribers.js';
import { openRawWs, type RawWs } from './wsclient.js';

interface Sub {
  ws: RawWs | undefined;
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
    let joined = false;
    const timer = setTimeout(() => {
      if (!joined) fail(new Error('no "joined" in time'));
    }, timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      ws.terminate();
      reject(err);
    };
    const ws = openRawWs(url, 'hooky.v1', localAddress, {
      onClose: (err) => {
        if (!joined) fail(err ?? new Error('closed before "joined"'));
      },
      onFrame: (data) => {
        if (joined) return onFrame(sub, data);
        const text = data.toString();
        if (text.startsWith('{"event":"connected"')) ws.send(`{"event":"join","data":{"webhookId":"${sub.webhookId}"}}`);
        else if (text.startsWith('{"event":"joined"')) {
          joined = true;
          clearTimeout(timer);
          resolve();
        } else if (text.startsWith('{"event":"error"')) fail(new Error(text.slice(0, 200)));
      },
    });
    sub.ws = ws;
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
          open: s.ws?.open === true,
          received: s.received,
          unique: s.seen.reduce((a, b) => a + b, 0),
          wrongRoom: s.wrongRoom,
          duplicates: s.duplicates,
        })),
        latencies: latencies.slice(0, nLat),
      });
      return;
    case 'close':
      // terminate() destroys each socket at once; the kernel sends the FINs after we exit.
      for (const s of subs) s.ws?.terminate();
      process.exit(0);
  }
});
send({ type: 'ready' });
