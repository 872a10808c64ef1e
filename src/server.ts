import { registerApi } from './api.js';
import { createAuth } from './auth.js';
import { createNotifyBus, type BusHandlers } from './bus.js';
import { registerCapture } from './capture.js';
import type { Config } from './config.js';
import { openDatabase } from './db/connect.js';
import { migrate } from './db/migrate.js';
import { HttpError } from './errors.js';
import { registerHealth } from './health.js';
import { sendError } from './http.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { createNatsBus } from './natsbus.js';
import { createRealtime } from './realtime.js';
import { createRelay } from './relay.js';
import { createRetention } from './retention.js';
import { createStore, type Webhook } from './store.js';
import { uws, type us_listen_socket } from './uws.js';
import { createWebhookCache } from './webhooks.js';
import { createWriter } from './writer.js';

export interface Server {
  readonly port: number;
  /** http://host:port as a client on this machine reaches it. */
  readonly url: string;
  readonly metrics: ReturnType<typeof createMetrics>;
  /** The documented shutdown; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Wires capture → store → publish on one uWS app and starts listening. Data flows one way:
 * the capture route hands rows to the writer, the writer commits them and passes them to
 * realtime, realtime publishes them to their rooms.
 */
export async function createServer(config: Config, log: Logger): Promise<Server> {
  const db = await openDatabase(config, log);
  try {
    await migrate(db.sql, log);
  } catch (err) {
    await db.close();
    throw err;
  }
  const store = createStore(db.sql);
  const webhooks = createWebhookCache(store);
  const metrics = createMetrics();
  let draining = false;
  const isDraining = () => draining;

  const auth = createAuth(config);
  const retention = createRetention(
    db.sql,
    {
      maxRequests: config.retentionMaxRequests,
      maxAgeMs: config.retentionMaxAgeMs,
      intervalMs: config.retentionIntervalMs,
      batch: config.retentionBatch,
    },
    { metrics, log },
  );

  const app = uws.App();
  // Another instance's deletion (announced, or found by the relay's check) empties the room here.
  const deletedElsewhere = (webhookId: string) => {
    webhooks.forget(webhookId);
    realtime.webhookDeleted(webhookId);
  };
  const relay = createRelay(
    // A fill reads at most what one INSERT batch may hold.
    { fillLimit: config.replayLimit, fillMaxBytes: config.batchMaxBytes, checkIntervalMs: 1000 },
    { store, log, metrics, publish: (rows) => realtime.publish(rows), deleted: deletedElsewhere },
  );
  const heard: BusHandlers = {
    // A batch that came with its rows (NATS) is published like one of ours: no read from Postgres.
    committed: (webhookId, position, rows) =>
      rows === undefined || position === undefined ? relay.announced(webhookId, position) : relay.committed(rows, new Map([[webhookId, position]])),
    created: webhooks.forget,
    deleted: deletedElsewhere,
    resumed: relay.resumed,
  };
  const bus =
    config.natsServers === undefined
      ? await createNotifyBus(db, heard, log)
      : await createNatsBus({ servers: config.natsServers, prefix: config.natsPrefix }, heard, log).catch(async (err: unknown) => {
          relay.close();
          metrics.close();
          await db.close();
          throw err;
        });
  // The bus hears a room's webhook from before its cursor is read until its last member leaves.
  const served = {
    watch: (webhookId: string) => (bus.watch?.(webhookId), relay.watch(webhookId)),
    unwatch: (webhookId: string) => (relay.unwatch(webhookId), bus.unwatch?.(webhookId)),
  };
  const realtime = createRealtime(app, config, { auth, store, webhooks, relay: served, metrics, log, isDraining });
  const writer = createWriter(
    store,
    {
      maxRows: config.batchMaxRows,
      maxBytes: config.batchMaxBytes,
      queueMaxBytes: config.queueMaxBytes,
      settleTimeoutMs: config.settleTimeoutMs,
    },
    metrics,
    log,
    (rows, positions) => {
      relay.committed(rows, positions);
      // A batch settled after a broken connection has no positions: the others look them up.
      bus.committed(positions.size > 0 ? positions : new Map(rows.map((r) => [r.webhookId, undefined])), rows);
      retention.written(rows);
    },
  );
  let port = 0;
  const publicUrl = () => config.publicUrl ?? `http://localhost:${port}`;
  registerCapture(app, config, { webhooks, writer, metrics, log, isDraining });
  // A webhook created here ends the other instances' remembered miss for its id at once.
  const announcing = { ...webhooks, remember: (w: Webhook) => (webhooks.remember(w), bus.created(w.id)) };
  const onDeleted = (webhookId: string) => {
    realtime.webhookDeleted(webhookId);
    bus.deleted(webhookId);
  };
  registerApi(app, { maxApiBodyBytes: config.maxApiBodyBytes, publicUrl }, { auth, store, webhooks: announcing, log, onDeleted });
  registerHealth(app, { metrics, isDraining, ping: store.ping });
  app.any('/*', (res) => sendError({ res, done: false }, new HttpError('not_found', 'No such route')));

  const listenSocket = await new Promise<us_listen_socket | false>((resolve) => app.listen(config.host, config.port, resolve));
  if (!listenSocket) {
    relay.close();
    await bus.close();
    await db.close();
    throw new Error(`Could not listen on ${config.host}:${config.port} (in use, or not an address of this machine)`);
  }
  port = uws.us_socket_local_port(listenSocket);
  const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host;
  log.info('database ready', { database: db.where });
  retention.start();

  let closing: Promise<void> | undefined;
  async function shutdown() {
    // 0. Start no further retention pass; the DELETE in flight, if any, is awaited before step 6.
    const retentionStopped = retention.close();
    // 1. Refuse new work: captures and upgrades get 503, /readyz turns 503.
    draining = true;
    // 2. Tell every client why, then close it with 1001 (going away).
    realtime.close('server shutting down');
    // 3. Stop accepting connections.
    uws.us_listen_socket_close(listenSocket as us_listen_socket);
    // 4. Commit every capture already accepted; each one answered 2xx is then in Postgres.
    const flushed = await Promise.race([writer.close().then(() => true), delay(config.shutdownTimeoutMs).then(() => false)]);
    if (!flushed) log.error('shutdown timeout: captures still waiting were not stored', { pending: writer.pending });
    // 5. Close what is still open (idle keep-alive connections), so nothing reaches a server
    //    that is going away. The binary has app.close(); its typings do not list it.
    (app as unknown as { close(): void }).close();
    // 6. Stop listening to the other instances, end the pool, then stop embedded Postgres.
    relay.close();
    await bus.close();
    await retentionStopped;
    await db.close();
    metrics.close();
  }

  return {
    port,
    url: `http://${host}:${port}`,
    metrics,
    close: () => (closing ??= shutdown()),
  };
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
