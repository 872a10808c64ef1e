/**
 * `hooky listen`'s session, its arguments already checked: follows one webhook's room through the
 * SDK, prints each request, forwards it when asked, and ends on a refusal, a loop or a signal.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from './client/index.js';
import { forward, forwardedBy } from './forward.js';
import { forwarded, json as jsonLine, line } from './format.js';
import { isPermanentRefusal, requestIdFloor } from './protocol.js';
import { reason, unauthorized } from './rest.js';

export interface ListenOptions {
  /** The server's http(s) base, ending in `/`. */
  server: URL;
  webhookId: string;
  token: string | undefined;
  /** Where each request is forwarded; undefined: printed only. */
  target: URL | undefined;
  json: boolean;
  since: string | undefined;
  wait: boolean;
  /** The command that goes on from request `last`, printed when stopped. */
  resume: (last: string) => string;
}

/** Resolves with the exit status: 0 when stopped by SIGINT or SIGTERM, 1 on an error. */
export function listen({ server, webhookId, token, target, json, since, wait, resume }: ListenOptions): Promise<number> {
  const client = createClient(server.href, token === undefined ? {} : { token });
  const say = (text: string): void => void process.stderr.write(`hooky: ${text}\n`);
  const out = (text: string): void => void process.stdout.write(`${text}\n`);
  // Marks every request this run forwards (the loop guard header): one that comes back is a loop.
  const runId = randomBytes(8).toString('hex');

  return new Promise<number>((resolve) => {
    let exiting = false;
    const exit = (status: number, message?: string) => {
      if (exiting) return;
      exiting = true;
      if (message) say(message);
      void client.close().then(() => resolve(status));
    };
    let connectedOnce = false;
    let joinedOnce = false;
    // Where a new run goes on from: the last request handled, else the --since given, else the
    // newest request when the join took effect (so that a run stopped before any request
    // arrived still resumes without a gap).
    let last = since;
    // Forwarded one at a time, in capture order: a receiver may depend on the order of events.
    let forwarding = Promise.resolve();

    client.on('connected', () => {
      connectedOnce = true;
      say(`connected to ${server.origin}`);
    });
    client.on('joined', ({ last: newest }) => {
      say(joinedOnce ? `rejoined ${webhookId}` : `listening for requests to ${webhookId}${target ? `, forwarding to ${target.href}` : ''} (Ctrl-C to stop)`);
      if (!joinedOnce && last === undefined) last = newest ?? requestIdFloor(0);
      joinedOnce = true;
    });
    client.on('disconnect', ({ reason: why }) => say(`disconnected: ${why}`));
    client.on('reconnecting', ({ attempt, delay }) => say(`reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})`));
    client.on('connect_error', (err) => {
      if (err.status === 401) exit(1, unauthorized(server, token));
      else if (err.status !== undefined && isPermanentRefusal(err.status)) exit(1, `${server.origin} refused the connection: ${err.message}`);
      // A first attempt that fails is most often a wrong --url: say so at once rather than
      // retrying forever. Once connected, a failure is an outage, retried with backoff.
      else if (!connectedOnce && !wait) exit(1, `cannot connect to ${server.origin}: ${err.message} (check --url; pass --wait to keep retrying until it is up)`);
      else say(`cannot connect: ${err.message}`);
    });
    client.on('error', (err) => {
      if (err.code === 'WEBHOOK_DELETED') exit(1, `webhook ${webhookId} was deleted`);
      // REFUSED follows a connect_error, which has already ended the command.
      else if (err.code !== 'WEBHOOK_NOT_FOUND' && err.code !== 'REFUSED') say(`server error ${err.code}: ${err.message}`);
    });
    client.on('new-request', (req) => {
      if (exiting) return;
      out(json ? jsonLine(req) : line(req));
      if (!target) return void (last = req.id);
      if (forwardedBy(req).includes(runId)) {
        return exit(
          1,
          `forwarding loop: request ${req.id} is one this command forwarded to ${target.href}, captured again by ${webhookId}; stopped forwarding. Point --forward at the server that should receive the requests, not at a hooky capture URL that leads back here`,
        );
      }
      // With --forward, the resume point moves once the forward has been tried, so that one still
      // in flight at Ctrl-C is sent again by the resumed run.
      forwarding = forwarding
        .then(() =>
          exiting
            ? undefined
            : forward(req, target, runId).then(
                (answer) => (json ? say : out)(forwarded(req, answer)),
                (err: unknown) => say(`forwarding ${req.id} to ${target.origin} failed: ${reason(err)}`),
              ),
        )
        .then(() => void (exiting || (last = req.id)));
    });

    client.join(webhookId, since === undefined ? {} : { since }).catch((err: { code?: string; message?: string }) => {
      exit(1, err.code === 'WEBHOOK_NOT_FOUND' ? `webhook ${webhookId} not found on ${server.origin}` : `cannot listen: ${err.message}`);
    });
    // The resume point lives in memory only; say how to go on from where this run left off.
    const stop = () => exit(0, last === undefined ? undefined : `stopped; to go on from here: ${resume(last)}`);
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, stop);
  });
}
