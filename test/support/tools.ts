/**
 * The machine's programs the tests run beside hooky (nginx, PgBouncer): finding one, and
 * waiting until one started in the foreground listens.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

/** The first of `candidates` that runs with `versionFlag` (a bare name is looked up in PATH). */
export function findTool(candidates: readonly string[], versionFlag: string): string | undefined {
  for (const candidate of candidates) {
    if (spawnSync(candidate, [versionFlag], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return undefined;
}

/** Whether something accepts a TCP connection on this loopback port now. */
const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });

/** Resolves once `child` listens on `port`; throws with what it said (`said`) if it exits first or takes over 10 s. */
export async function untilListening(child: ChildProcess, name: string, port: number, said: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${said()}`);
    if (await accepts(port)) return;
    if (Date.now() > deadline) throw new Error(`${name} did not listen on ${port} within 10 s: ${said()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
