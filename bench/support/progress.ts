/**
 * The one status line shown while a scenario runs: rewritten in place on a terminal, printed at
 * most every 5 s otherwise (CI logs).
 */
const tty = process.stderr.isTTY === true;
let last = 0;
let shown = false;

export function progress(text: string): void {
  if (tty) {
    process.stderr.write(`\r\x1b[2K${text}`);
    shown = true;
    return;
  }
  const now = Date.now();
  if (now - last < 5000) return;
  last = now;
  process.stderr.write(`${text}\n`);
}

/** Ends the status line so the next output starts on a clean line. */
export function progressDone(text?: string): void {
  if (tty && shown) process.stderr.write('\r\x1b[2K');
  shown = false;
  last = 0;
  if (text) process.stderr.write(`${text}\n`);
}
