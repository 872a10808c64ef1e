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
// The text of everything up to the counter, redone only when the millisecond changes: on the
// capture path most ids share their millisecond with the one before.
let prefix = '';
const msPrefix = (ms: number) => {
  const hex = ms.toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8)}-7`;
};
const hex2 = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));
const hex3 = Array.from({ length: 0x1000 }, (_, n) => n.toString(16).padStart(3, '0'));

/**
 * A monotonic UUIDv7 (RFC 9562 §6.2, method 1): 48-bit milliseconds, then a 12-bit counter in
 * rand_a that restarts each millisecond, then 62 random bits. A counter overflow or a clock that
 * steps back borrows the next millisecond, so every id is greater than the one before it.
 */
export function newRequestId(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seq = 0;
    prefix = msPrefix(lastMs);
  } else if (++seq > 0xfff) {
    lastMs++;
    seq = 0;
    prefix = msPrefix(lastMs);
  }
  if (poolAt + 8 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += 8;
  // The variant's two bits (10) over 6 random ones, then 56 more random bits.
  return `${prefix}${hex3[seq]!}-${hex2[(pool[at]! & 0x3f) | 0x80]!}${hex2[pool[at + 1]!]!}-${pool.toString('hex', at + 2, at + 8)}`;
}
