import { randomBytes, randomFillSync } from 'node:crypto';
import { webhookIdPattern } from './protocol.js';


/** 128 random bits from the CSPRNG, URL-safe; redrawn until it starts with a letter or digit. */
export function newWebhookId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (webhookIdPattern.test(id)) return id;
  }
}

const pool = Buffer.allocUnsafe(8 * 1024);
let poolAt = pool.length;
let lastMs = 0;
let seq = 0;

/**
 * A monotonic UUIDv7 (RFC 9562 §6.2, method 1): 48-bit milliseconds, then a 12-bit counter in
 * rand_a that restarts each millisecond, then 62 random bits. A counter overflow or a clock that
 * steps back borrows the next millisecond, so every id is greater than the one before it.
 */
export function newRequestId(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seq = 0;
  } else if (++seq > 0xfff) {
    lastMs++;
    seq = 0;
  }
  if (poolAt + 8 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const r = pool.subarray(poolAt, (poolAt += 8));
  const ms = lastMs.toString(16).padStart(12, '0');
  const variant = ((r[0]! & 0x3f) | 0x80).toString(16) + hex2(r[1]!);
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${seq.toString(16).padStart(3, '0')}-${variant}-${r.toString('hex', 2, 8)}`;
}

const hex2 = (b: number) => (b < 16 ? '0' : '') + b.toString(16);
