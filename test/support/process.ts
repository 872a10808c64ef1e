import { spawn, type ChildProcess } from 'node:child_process';

export interface Running {
  child: ChildProcess;
  url: string;
  port: number;
  output: () => string;
  exited: Promise<number | null>;
}

const mainTs = new URL('../../src/main.ts', import.meta.url).pathname;

/**
 * Starts `src/main.ts` as its own process and waits for its "listening" line. `fdLimit` starts it
 * under `ulimit -n <fdLimit>` (soft and hard).
 */
export function spawnMain(env: Record<string, string>, timeoutMs = 30_000, options: { fdLimit?: number } = {}): Promise<Running> {
  const node = [process.execPath, '--import', 'tsx', mainTs];
  const [file, ...args] = options.fdLimit ? ['sh', '-c', `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, ...node] : node;
  const child = spawn(file!, args, {
    // Retention is off unless a test turns it on: on a shared database it would delete other runs' rows.
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', HOOKY_LOG_LEVEL: 'info', HOOKY_RETENTION_MAX_REQUESTS: '0', HOOKY_RETENTION_MAX_AGE_HOURS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not left running behind a failed test.
      child.kill('SIGKILL');
      reject(new Error(`no listening line within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = () => {
      const m = /hooky listening on (http:\/\/[^\s"]+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stderr!.off('data', onData);
      const port = Number(new URL(m[1]!).port);
      resolve({ child, url: `http://127.0.0.1:${port}`, port, output: () => out, exited });
    };
    child.stderr!.on('data', onData);
    exited.then((code) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`exited with ${code} before listening:\n${out}`), { code, output: out }));
    });
  });
}

/** Runs main to completion (for start-up failures) and returns its exit code and output. */
export function runMain(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return spawnMain(env).then(
    async (r) => {
      r.child.kill('SIGKILL');
      return { code: await r.exited, output: r.output() };
    },
    (err: { code: number | null; output: string }) => ({ code: err.code, output: err.output }),
  );
}
