import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));

/** A server under test running in its own process: RSS and CPU are read from /proc by pid. */
export interface Target {
  name: string;
  pid: number;
  port: number;
  url: string;
  wsUrl: string;
  /** Resident set size in bytes. */
  rss(): number;
  /** User + system CPU seconds used so far. */
  cpu(): number;
  stop(): Promise<void>;
}

/** VmRSS of a process, in bytes. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const ticks = 100; // USER_HZ on Linux
/** utime + stime of a process, in seconds. */
export function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / ticks;
}

/**
 * CPU seconds of one PostgreSQL cluster: its postmaster and every process it forked (backends,
 * WAL writer, checkpointer, autovacuum). Other clusters on the machine are not counted. Backends
 * that exited meanwhile are lost, so compare figures taken while the pool stays connected.
 */
export function cpuOfCluster(postmasterPid: number): number {
  let total = 0;
  for (const pid of readdirNumeric('/proc')) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (pid === postmasterPid || ppid === postmasterPid) total += cpuOf(pid);
    } catch {
      // The process ended between readdir and read: it no longer uses CPU.
      continue;
    }
  }
  return total;
}

/** Busy CPU seconds of the whole machine, every core, every process (from /proc/stat). */
export function machineCpu(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  return (f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / ticks;
}

/**
 * CPU seconds of a process and of its children (with HOOKY_WORKERS, the primary and its
 * workers). A child that exited meanwhile is lost: compare figures taken while none restarts.
 */
export function cpuOfTree(pid: number): number {
  let total = cpuOf(pid);
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // No children file (an old kernel): the process alone.
  }
  for (const child of children) {
    try {
      total += cpuOfTree(child);
    } catch {
      continue; // it ended between the listing and the read
    }
  }
  return total;
}

function readdirNumeric(dir: string): number[] {
  return readdirSync(dir)
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

/**
 * Starts a child `node --import tsx <file>` and resolves once `ready` matches a line of its
 * stderr or stdout (its first group is the port). The child is killed if it does not get there.
 */
function startChild(name: string, args: string[], env: Record<string, string>, ready: RegExp, timeoutMs = 60_000): Promise<Target> {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  return new Promise<Target>((resolve, reject) => {
    let port = 0;
    const timer = setTimeout(() => fail(new Error(`${name} did not start within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${err.message}\n${lines.slice(-20).join('\n')}`));
    };
    const onLine = (line: string) => {
      lines.push(line);
      if (lines.length > 200) lines.shift();
      const m = port === 0 ? ready.exec(line) : null;
      if (!m) return;
      port = Number(m[1]);
      clearTimeout(timer);
      resolve(target(name, child, port, lines));
    };
    lineReader(child.stdout!, onLine);
    lineReader(child.stderr!, onLine);
    child.once('exit', (code, signal) => {
      if (port === 0) fail(new Error(`${name} exited (${code ?? signal}) before it listened`));
    });
  });
}

function target(name: string, child: ChildProcess, port: number, lines: string[]): Target {
  const exited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid: child.pid!,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    rss: () => rssOf(child.pid!),
    cpu: () => cpuOfTree(child.pid!),
    stop: () =>
      (stopping ??= (async () => {
        child.kill('SIGTERM');
        const killed = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(killed);
        const errors = lines.filter((l) => l.includes('"level":"error"'));
        if (errors.length > 0) process.stderr.write(`\n${name} logged ${errors.length} error line(s), first: ${errors[0]}\n`);
      })()),
  };
}

function lineReader(stream: NodeJS.ReadableStream, onLine: (l: string) => void) {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop()!;
    for (const p of parts) onLine(p);
  });
}

export interface HookyOptions {
  databaseUrl: string;
  env?: Record<string, string>;
  /** Directory for a V8 CPU profile of the server (node --cpu-prof), written when it exits. */
  cpuProfDir?: string | undefined;
}

/**
 * hooky as users run it: `node --import tsx src/main.ts`, with the bench-only no-op route on.
 * HOOKY_WORKERS in the bench's environment reaches it too (`HOOKY_WORKERS=2 npm run bench -- capture`).
 */
export function startHooky(opts: HookyOptions): Promise<Target> {
  const prof = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : [];
  return startChild(
    'hooky',
    [...prof, '--import', 'tsx', 'src/main.ts'],
    {
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: opts.databaseUrl,
      HOOKY_LOG_LEVEL: 'info',
      HOOKY_BENCH_NOOP: '1',
      // Retention would delete rows while "lost = 2xx − rows" is being counted, and its byte
      // rule's pass (a minute after start, then every minute) reads the size of every row of a
      // webhook holding less than its budget: a burst of Postgres CPU inside some slice.
      HOOKY_RETENTION_MAX_REQUESTS: '0',
      HOOKY_RETENTION_MAX_AGE_HOURS: '0',
      HOOKY_RETENTION_MAX_BYTES: '0',
      ...opts.env,
    },
    /hooky listening on http:\/\/[^:]+:(\d+)/,
  );
}

/** The bare uWS reference server of bench/reference.ts. */
export function startReference(cpuProfDir?: string): Promise<Target> {
  const prof = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
  return startChild('reference', [...prof, '--import', 'tsx', 'bench/reference.ts'], {}, /reference listening on (\d+)/);
}
