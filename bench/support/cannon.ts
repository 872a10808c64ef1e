import { spawn } from 'node:child_process';
import { root } from './proc.js';

export interface CannonJob {
  url: string;
  paths: string[];
  body: string;
  connections: number;
  duration: number;
  idsFile?: string;
}

export interface CannonResult {
  requests: number;
  rps: number;
  latency: { p50: number; p99: number; max: number; mean: number };
  duration: number;
  twoxx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  ids: number;
  /** CPU seconds the load generator used. */
  cpu: number;
  /** Requests answered in each second, as autocannon counted them. */
  perSecond: number[];
}

/** Runs autocannon in a child process; `onTick(second, requestsThatSecond)` for the progress line. */
export function runCannon(job: CannonJob, onTick?: (second: number, count: number) => void): Promise<CannonResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/support/cannon-process.ts', JSON.stringify(job)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const perSecond: number[] = [];
  let result: CannonResult | undefined;
  let rest = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith('tick ')) {
        const [, s, n] = line.split(' ');
        perSecond.push(Number(n));
        onTick?.(Number(s), Number(n));
      } else if (line.startsWith('result ')) result = { ...(JSON.parse(line.slice(7)) as Omit<CannonResult, 'perSecond'>), perSecond };
    }
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => (result ? resolve(result) : reject(new Error(`autocannon process exited with ${code} and no result`))));
  });
}
