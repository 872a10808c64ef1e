import { randomBytes } from 'node:crypto';

/**
 * A UUIDv7 made at `ms`. Not newRequestId: that one is monotonic for the whole process, so asked
 * for a past millisecond it answers with the current one (and asked for a future one, it would
 * move every later id of this test run there).
 */
export function uuidV7(ms: number): string {
  const t = ms.toString(16).padStart(12, '0');
  const r = randomBytes(10).toString('hex');
  return `${t.slice(0, 8)}-${t.slice(8)}-7${r.slice(0, 3)}-${'89ab'[parseInt(r[3]!, 16) & 3]}${r.slice(4, 7)}-${r.slice(7, 19)}`;
}
