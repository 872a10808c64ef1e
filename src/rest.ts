/**
 * The CLI's calls to a hooky server's REST API, and the words it uses when a server cannot be
 * reached or refuses. The token never appears in a message: messages end up in logs.
 */

/** The capture URL of the new webhook, or why there is none. */
export type Created = { url: string } | { error: string };

/** `POST /api/webhooks`: creates the webhook `id` (a random id without it) on the server at `base`. */
export async function createWebhook(base: URL, token: string | undefined, id: string | undefined): Promise<Created> {
  let res: Response;
  try {
    res = await fetch(new URL('api/webhooks', base), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
      body: JSON.stringify(id === undefined ? {} : { id }),
    });
  } catch (err) {
    return { error: `cannot reach ${base.origin}: ${reason(err)}` };
  }
  const text = await res.text();
  if (res.status === 401) return { error: unauthorized(base, token) };
  const body = parseJson(text) as { url?: unknown; error?: unknown; message?: unknown } | undefined;
  if (res.status !== 201 || typeof body?.url !== 'string') {
    const detail = typeof body?.message === 'string' ? body.message : text.slice(0, 200);
    return { error: `could not create the webhook: HTTP ${res.status}${typeof body?.error === 'string' ? ` ${body.error}` : ''}: ${detail}` };
  }
  return { url: body.url };
}

/** What to do about a 401, from the REST API or the WebSocket upgrade. */
export const unauthorized = (server: URL, token: string | undefined): string =>
  token === undefined
    ? `${server.origin} requires an API token: pass --token or set HOOKY_API_TOKEN`
    : `${server.origin} did not accept the API token (HTTP 401): check --token or HOOKY_API_TOKEN`;

/** Why a call failed, in a few words: the socket's error where fetch hides it in `cause`. */
export function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  return cause?.message || err.message || code || 'unknown error';
}

/** JSON, or undefined for an answer that is not (a proxy's error page), which callers show as text. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
