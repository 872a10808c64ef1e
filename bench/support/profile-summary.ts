/**
 * Summarises a V8 .cpuprofile (from BENCH_PROFILE=1): the functions with the most self time and
 * the most inclusive time. `node --import tsx bench/support/profile-summary.ts <file> [top]`
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}
const [file, topArg] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file!, 'utf8')) as { nodes: Node[]; startTime: number; endTime: number };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const total = prof.nodes.reduce((a, n) => a + n.hitCount, 0);
const name = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules\/|src\/|bench\/)/, '$1')}:${n.callFrame.lineNumber + 1}`;
const self = new Map<string, number>();
const incl = new Map<string, number>();
function walk(n: Node, stack: Set<string>): number {
  let sum = n.hitCount;
  const key = name(n);
  self.set(key, (self.get(key) ?? 0) + n.hitCount);
  const fresh = !stack.has(key);
  if (fresh) stack.add(key);
  for (const c of n.children ?? []) sum += walk(byId.get(c)!, stack);
  if (fresh) {
    stack.delete(key);
    incl.set(key, (incl.get(key) ?? 0) + sum);
  }
  return sum;
}
walk(prof.nodes[0]!, new Set());
const top = Number(topArg ?? 30);
const pct = (x: number) => `${((100 * x) / total).toFixed(1).padStart(5)}%`;
console.log(`${total} samples over ${((prof.endTime - prof.startTime) / 1e6).toFixed(1)} s`);
console.log('\nself time');
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
console.log('\ninclusive time');
for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
