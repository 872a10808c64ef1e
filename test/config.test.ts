import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadConfig } from '../src/config.js';

const test = suite('config');

test('defaults, with units, when the environment says nothing', () => {
  const c = loadConfig({});
  assert.is(c.server.port, 3000);
  assert.is(c.server.host, '0.0.0.0');
  assert.is(c.db.url, undefined);
  assert.is(c.db.dataDir, './.hooky');
  assert.is(c.capture.maxBodyBytes, 10 * 1024 * 1024);
  assert.is(c.ws.maxBuffer, 2 * 10 * 1024 * 1024 + 1024 * 1024);
  assert.is(c.capture.trustProxy, 0);
  assert.is(c.server.logLevel, 'info');
});

test('limits, security and retention: defaults with their units', () => {
  const c = loadConfig({});
  assert.is(c.ws.maxConnections, 10_000);
  assert.is(c.ws.rateLimit, 100);
  assert.is(c.ws.rateBurst, 200);
  assert.is(c.capture.maxHeaders, 48);
  assert.is(c.capture.maxHeaderBytes, 16 * 1024);
  assert.is(c.auth.apiToken, undefined);
  assert.is(c.auth.allowedOrigins, undefined);
  assert.is(c.retention.maxRequests, 10_000);
  assert.is(c.retention.maxAgeMs, 7 * 24 * 3600_000);
  assert.is(c.retention.intervalMs, 60_000);
  assert.is(c.retention.batch, 1000);
  assert.is(c.retention.maxBytes, 1024 * 1024 * 1024);
  assert.is(c.api.maxWebhooks, 100_000);
  assert.is(loadConfig({ HOOKY_MAX_WEBHOOKS: '0', HOOKY_RETENTION_MAX_BYTES: '0' }).api.maxWebhooks, 0);
});

test('the API token and allowed origins are checked and normalised', () => {
  const c = loadConfig({
    HOOKY_API_TOKEN: ' 0123456789abcdef0123 ',
    HOOKY_ALLOWED_ORIGINS: 'https://App.Example.com, http://localhost:5173 ,',
    HOOKY_RETENTION_MAX_AGE_HOURS: '0',
  });
  assert.is(c.auth.apiToken, '0123456789abcdef0123');
  assert.equal(c.auth.allowedOrigins, ['https://app.example.com', 'http://localhost:5173']);
  assert.ok(Object.isFrozen(c.auth.allowedOrigins));
  assert.is(c.retention.maxAgeMs, 0);
  for (const [key, value] of [
    ['HOOKY_API_TOKEN', 'short'],
    ['HOOKY_API_TOKEN', 'has spaces in it, 0123456789'],
    ['HOOKY_API_TOKEN', 'slash/and=equals0123456789'],
    ['HOOKY_ALLOWED_ORIGINS', 'https://app.example.com/path'],
    ['HOOKY_ALLOWED_ORIGINS', 'app.example.com'],
    ['HOOKY_ALLOWED_ORIGINS', ' , '],
    ['HOOKY_MAX_CONNECTIONS', '0'],
  ] as const) {
    assert.throws(() => loadConfig({ [key]: value }), (e: unknown) => e instanceof ConfigError && e.message.includes(key), `${key}=${value}`);
  }
});

test('values are parsed and the result is frozen', () => {
  const c = loadConfig({
    PORT: '0',
    DATABASE_URL: 'postgres://u@h/db',
    HOOKY_TRUST_PROXY: 'yes',
    HOOKY_PUBLIC_URL: 'https://hooks.example.com/',
    HOOKY_MAX_ROOMS: ' 5 ',
  });
  assert.is(c.server.port, 0);
  assert.is(c.db.url, 'postgres://u@h/db');
  assert.is(c.capture.trustProxy, 1);
  assert.is(loadConfig({ HOOKY_TRUST_PROXY: '2' }).capture.trustProxy, 2);
  assert.is(c.server.publicUrl, 'https://hooks.example.com');
  assert.is(c.ws.maxRooms, 5);
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.ws), 'every group is frozen too');
});

test('every problem is listed in one error', () => {
  const err = (() => {
    try {
      loadConfig({ PORT: '70000', HOOKY_MAX_BODY_BYTES: 'ten', HOOKY_LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x', HOOKY_TRUST_PROXY: 'maybe' });
    } catch (e) {
      return e;
    }
  })();
  assert.instance(err, ConfigError);
  const { problems, message } = err as ConfigError;
  assert.is(problems.length, 5);
  for (const key of ['PORT', 'HOOKY_MAX_BODY_BYTES', 'HOOKY_LOG_LEVEL', 'DATABASE_URL', 'HOOKY_TRUST_PROXY']) {
    assert.ok(message.includes(key), key);
  }
  assert.match(message, /PORT="70000": must be at most 65535/);
});

test('DATABASE_URL: a URL postgres.js can read, a Unix socket named the libpq way', () => {
  assert.throws(() => loadConfig({ DATABASE_URL: 'postgres://u@/db' }), /DATABASE_URL="postgres:\/\/u@\/db": must be a URL: .*\?host=\/var\/run\/postgresql/);
  assert.is(loadConfig({ DATABASE_URL: 'postgresql:///hooky?host=/var/run/postgresql' }).db.url, 'postgresql:///hooky?host=/var/run/postgresql');
});

test('the writer leaves a pool connection to everything else', () => {
  assert.throws(() => loadConfig({ HOOKY_WRITER_FLUSHES: '10', HOOKY_PG_POOL_SIZE: '10' }), /HOOKY_WRITER_FLUSHES=10: must be below HOOKY_PG_POOL_SIZE \(10\)/);
  assert.is(loadConfig({ HOOKY_WRITER_FLUSHES: '9', HOOKY_PG_POOL_SIZE: '10' }).writer.flushes, 9);
  assert.is(loadConfig({}).writer.flushes, 1);
});

test('the rate burst must cover a rejoin of every room', () => {
  assert.throws(() => loadConfig({ HOOKY_MAX_ROOMS: '401', HOOKY_WS_RATE_BURST: '200' }), /HOOKY_WS_RATE_BURST=200: must be at least half of HOOKY_MAX_ROOMS \(401\)/);
  assert.is(loadConfig({ HOOKY_MAX_ROOMS: '400', HOOKY_WS_RATE_BURST: '200' }).ws.maxRooms, 400);
  assert.is(loadConfig({ HOOKY_MAX_ROOMS: '401', HOOKY_WS_RATE_BURST: '200', HOOKY_WS_RATE_LIMIT: '0' }).ws.maxRooms, 401);
});

test('resend is off by default; HOOKY_RESEND_ALLOW takes origins only, lower-cased', () => {
  const d = loadConfig({});
  assert.is(d.resend.allow, undefined);
  assert.is(d.resend.timeoutMs, 10_000);
  assert.is(d.api.searchScanRows, 10_000);
  assert.equal(loadConfig({ HOOKY_RESEND_ALLOW: 'http://LOCALHOST:4000, https://hooks.example.com' }).resend.allow, ['http://localhost:4000', 'https://hooks.example.com']);
  assert.throws(() => loadConfig({ HOOKY_RESEND_ALLOW: 'http://localhost:4000/path' }), /HOOKY_RESEND_ALLOW/);
  assert.throws(() => loadConfig({ HOOKY_RESEND_TIMEOUT_MS: '50' }), /HOOKY_RESEND_TIMEOUT_MS="50": must be at least 100/);
});

test('the settings are grouped by the module they configure, every variable read once', () => {
  const c = loadConfig({ HOOKY_BATCH_MAX_ROWS: '7', HOOKY_RETENTION_MAX_AGE_HOURS: '2' });
  assert.equal(Object.keys(c).sort(), ['api', 'auth', 'bus', 'capture', 'db', 'reads', 'resend', 'retention', 'server', 'writer', 'ws']);
  assert.is(c.writer.maxRows, 7);
  assert.is(c.retention.maxAgeMs, 2 * 3600_000, 'given in hours, kept in ms');
});

test('HOOKY_NATS_URL: unset is the NOTIFY bus; a list of nats:// or tls:// servers; anything else is refused', () => {
  assert.is(loadConfig({}).bus.natsServers, undefined);
  assert.is(loadConfig({}).bus.natsPrefix, 'hooky');
  const c = loadConfig({ HOOKY_NATS_URL: ' nats://n1:4222, tls://n2:4222 ', HOOKY_NATS_PREFIX: 'prod.hooky' });
  assert.equal(c.bus.natsServers, ['nats://n1:4222', 'tls://n2:4222']);
  assert.is(c.bus.natsPrefix, 'prod.hooky');
  for (const bad of [{ HOOKY_NATS_URL: 'http://n1:4222' }, { HOOKY_NATS_URL: ',' }, { HOOKY_NATS_PREFIX: 'a.*' }, { HOOKY_NATS_PREFIX: 'a..b' }]) {
    assert.throws(() => loadConfig(bad), (e: unknown) => e instanceof ConfigError && e.message.includes(Object.keys(bad)[0]!));
  }
});

test.run();
