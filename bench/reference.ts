/**
 * The reference of the fanout and connections scenarios: a bare uWS server that speaks just
 * enough hooky.v1 (`connected`, `join` → `joined`) and publishes what it is POSTed to the room,
 * as the same payload JSON hooky builds, without storage, webhook lookups or per-socket state.
 * Run as its own process: `node --import tsx bench/reference.ts` prints `reference listening on <port>`.
 */
import { newRequestId } from '../src/ids.js';
import { buildPayload } from '../src/payload.js';
import { newRequestFrame, PROTOCOL, roomOf } from '../src/protocol.js';
import { uws } from '../src/uws.js';

const app = uws.App();

app.ws('/ws', {
  compression: uws.DISABLED,
  maxPayloadLength: 64 * 1024,
  idleTimeout: 60,
  upgrade(res, req, context) {
    res.upgrade({}, req.getHeader('sec-websocket-key'), PROTOCOL, req.getHeader('sec-websocket-extensions'), context);
  },
  open(ws) {
    ws.send(`{"event":"connected","data":{"connectionId":"ref","protocol":"${PROTOCOL}"}}`, false);
  },
  message(ws, message) {
    const msg = JSON.parse(Buffer.from(message).toString()) as { event: string; data: { webhookId: string } };
    if (msg.event !== 'join') return;
    const room = roomOf(msg.data.webhookId);
    ws.subscribe(room);
    ws.send(JSON.stringify({ event: 'joined', data: { webhookId: msg.data.webhookId, room } }), false);
  },
});

app.any('/h/:id', (res, req) => {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const webhookId = req.getParameter(0) ?? '';
  const headers: Record<string, string> = Object.create(null);
  req.forEach((k, v) => (headers[k] = v));
  const facts = { method: req.getCaseSensitiveMethod().toUpperCase(), path: '/', headers, rawQuery: req.getQuery() ?? '', sourceIp: '127.0.0.1' };
  const chunks: Buffer[] = [];
  res.onData((ab, last) => {
    chunks.push(Buffer.from(new Uint8Array(ab)));
    if (!last) return;
    const id = newRequestId();
    const { json } = buildPayload(id, webhookId, facts, Buffer.concat(chunks), new Date());
    app.publish(roomOf(webhookId), newRequestFrame(json), false);
    if (!aborted) res.cork(() => res.writeHeader('content-type', 'application/json').end(`{"ok":true,"id":"${id}"}`));
  });
});

app.listen('127.0.0.1', 0, (listen) => {
  if (!listen) throw new Error('reference: could not listen');
  process.stdout.write(`reference listening on ${uws.us_socket_local_port(listen)}\n`);
  const stop = () => {
    uws.us_listen_socket_close(listen);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
