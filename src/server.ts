import cluster from 'node:cluster';
import { registerApi } from './api.js';
import { createAuth } from './auth.js';
import { createBudget } from './budget.js';
import { createNotifyBus, type BusHandlers } from './bus.js';
import { registerCapture } from './capture.js';
import { serviceMetrics } from './cluster.js';
import type { Config } from './config.js';
import { openDatabase } from './db/connect.js';
import { migrate } from './db/migrate.js';
import { HttpError } from './errors.js';
import { registerDeletion } from './deletion.js';
import { registerExport } from './export.js';
import { registerHealth } from './health.js';
import { registerListing } from './listing.js';
import { sendError } from './http.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { createNatsBus } from './natsbus.js';
import { createRealtime } from './realtime.js';
import { registerResend } from './resend.js';
import { createRetention } from './retention.js';
import { createSearch } from './search.js';
import { registerStatic } from './static.js';
import { createRelay } from './relay.js';
import { handoverGraceMs, processChannel, withSiblings } from './siblings.js';
import { createStore, type Webhook } from './store.js';
import { listen, type Listener } from './listener.js';
import { uws } from './uws.js';
import { createWebhookCache } from './webhooks.js';
import { createWriter } from './writer.js';

export interface Server {
  readonly port: number;
  /** http://host:port as a client on this machine reaches it. */
  readonly url: string;
  /** http://host:port of what it is bound to (0.0.0.0 or [::] for every interface). */
  readonly address: string;
  readonly metrics: ReturnType<typeof createMetrics>;
  /** The documented shutdown; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Wires capture → store → publish on one uWS app and starts listening. Data flows one way:
 * the capture route hands rows to the writer, the writer commits them and passes them to the
 * relay (and tells the other instances through the bus), and the relay publishes each room's
 * batches in commit order through realtime's rooms.
 */
export async function createServer(config: Config, log: Logger): Promise<Server> {
  const db = await openDatabase(config.db, log);
  try {
    // A worker of HOOKY_WORKERS: the primary ran the migrations once before starting it.
    if (!cluster.isWorker) await migrate(db.sql, log);
  } catch (err) {
    await db.close();
    throw err;
  }
  const store = createStore(db.sql);
  const webhooks = createWebhookCache(store);
  // A worker's /metrics describes the whole service: the primary sums every worker's (cluster.ts).
  const metrics = cluster.isWorker ? { ...createMetrics(), render: serviceMetrics } : createMetrics();
  let draining = false;
  const isDraining = () => draining;

  const auth = createAuth(config.auth);
  const retention = createRetention(db.sql, config.retention, { metrics, log });

  const app = uws.App();
  // One ceiling for the payload bytes of every REST page and replay page being fetched or sent.
  const reads = createBudget(config.reads.maxReadBytes, (delta) => metrics.readBytes.inc(delta));
  // Another instance's deletion (announced, or found by the relay's check) empties the room here.
  const deletedElsewhere = (webhookId: string) => {
    webhooks.forget(webhookId);
    realtime.webhookDeleted(webhookId);
  };
  const relay = createRelay(
    // A fill reads at most what one INSERT batch may hold.
    {
      fillLimit: config.reads.replayLimit,
      fillMaxBytes: config.writer.maxBytes,
      checkIntervalMs: 1000,
      // Other instances' batches come with their rows over NATS and, between workers, over the
      // primary (siblings.ts): one held past a gap waits a moment for the one before it.
      holdGraceMs: config.bus.natsServers !== undefined || cluster.isWorker ? handoverGraceMs : 0,
    },
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
    config.bus.natsServers === undefined
      ? cluster.isWorker
        ? await withSiblings((handlers) => createNotifyBus(db, handlers, log), processChannel(), heard, log)
        : await createNotifyBus(db, heard, log)
      : await createNatsBus({ servers: config.bus.natsServers, prefix: config.bus.natsPrefix }, heard, log).catch(async (err: unknown) => {
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
  const realtime = createRealtime(
    app,
    { ...config.ws, replayLimit: config.reads.replayLimit, maxPageBytes: config.reads.maxPageBytes },
    { auth, store, webhooks, relay: served, metrics, log, reads, isDraining },
  );
  const writer = createWriter(store, config.writer, {
    metrics,
    log,
    onCommitted(rows, positions) {
      relay.committed(rows, positions);
      // A batch settled after a broken connection has no positions: the others look them up.
      bus.committed(positions.size > 0 ? positions : new Map(rows.map((r) => [r.webhookId, undefined])), rows);
      retention.written(rows);
    },
  });
  let port = 0;
  const publicUrl = () => config.server.publicUrl ?? `http://localhost:${port}`;
  const search = createSearch(db.sql, { scanRows: config.api.searchScanRows });
  const capture = registerCapture(app, config.capture, { webhooks, writer, metrics, log, isDraining });
  // A webhook created here ends the other instances' remembered miss for its id at once.
  const announcing = { ...webhooks, remember: (w: Webhook) => (webhooks.remember(w), bus.created(w.id)) };
  const onDeleted = (webhookId: string) => {
    realtime.webhookDeleted(webhookId);
    bus.deleted(webhookId);
  };
  registerApi(
    app,
    { ...config.api, maxPageBytes: config.reads.maxPageBytes, publicUrl },
    { auth, store, webhooks: announcing, log, metrics, reads, onDeleted, search },
  );
  registerDeletion(app, { batch: config.retention.batch }, { auth, sql: db.sql, webhooks, log });
  registerResend(app, { ...config.resend, maxApiBodyBytes: config.api.maxApiBodyBytes }, { auth, store, webhooks, log });
  registerExport(app, { publicUrl }, { auth, sql: db.sql, webhooks, log });
  registerListing(app, { publicUrl }, { auth, sql: db.sql, log });
  registerHealth(app, { metrics, log, isDraining, ping: store.ping });
  registerStatic(app);
  app.any('/*', (res) => sendError({ res, done: false }, new HttpError('not_found', 'No such route')));

  let listener: Listener;
  try {
    listener = await listen(app, { host: config.server.host, port: config.server.port, share: config.server.sharePort }, { log, metrics });
  } catch (err) {
    metrics.close();
    relay.close();
    await bus.close();
    await db.close();
    throw err;
  }
  port = listener.port;
  const anyAddress = config.server.host === '0.0.0.0' || config.server.host === '::';
  const literal = (h: string) => (h.includes(':') ? `[${h}]` : h);
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
    listener.close();
    // 4. Commit every capture already accepted; each one answered 2xx is then in Postgres.
    //    Those whose webhook delays its answer get it at its time, or at the deadline.
    const deadline = Date.now() + config.server.shutdownTimeoutMs;
    const flushed = await Promise.race([writer.close().then(() => true), delay(config.server.shutdownTimeoutMs).then(() => false)]);
    if (!flushed) log.error('shutdown timeout: captures still waiting were not stored', { pending: writer.pending });
    await capture.answered(deadline);
    // 5. Close what is still open (idle keep-alive connections), so nothing reaches a server
    //    that is going away. The binary has app.close(); its typings do not list it.
    (app as unknown as { close(): void }).close();
    // 6. Stop listening to the other instances, end the pool, then stop embedded Postgres.
    relay.close();
    await bus.close();
    await retentionStopped;
    // A query still out past the deadline (a batch being settled while Postgres refuses
    // connections) is not waited for: the shutdown ends at its timeout.
    await db.close(Math.max(0, (deadline - Date.now()) / 1000));
    metrics.close();
  }

  return {
    port,
    url: `http://${anyAddress ? 'localhost' : literal(config.server.host)}:${port}`,
    address: `http://${literal(config.server.host)}:${port}`,
    metrics,
    close: () => (closing ??= shutdown()),
  };
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
