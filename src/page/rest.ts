/**
 * The REST API as the page calls it: same origin, the API token (asked for once, kept for the
 * tab in sessionStorage) as a Bearer header. A 401 asks for the token and tries again.
 */
import { tokenPattern } from '../protocol.js';
import { h } from './dom.js';

const tokenKey = 'hooky.token';

export function token(): string | undefined {
  return sessionStorage.getItem(tokenKey) ?? undefined;
}

export function forgetToken(): void {
  sessionStorage.removeItem(tokenKey);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api(path: string, init: RequestInit = {}): Promise<Response> {
  for (;;) {
    const headers = new Headers(init.headers);
    const t = token();
    if (t) headers.set('authorization', `Bearer ${t}`);
    const res = await fetch(path, { ...init, headers });
    if (res.status !== 401) return res;
    await askToken(t ? 'That token was refused. The server needs its API token (HOOKY_API_TOKEN).' : 'This server needs its API token (HOOKY_API_TOKEN).');
  }
}

/** `api` for JSON answers: a non-2xx answer throws its `{error, message}` as an ApiError. */
export async function apiJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await api(path, init);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const b = body as { error?: string; message?: string } | undefined;
    throw new ApiError(res.status, b?.error ?? `http_${res.status}`, b?.message ?? (text.slice(0, 200) || res.statusText));
  }
  return body as T;
}

let asking: Promise<void> | undefined;

/** Shows the token dialog; resolves once a token is stored. One dialog however many callers. */
export function askToken(why: string): Promise<void> {
  asking ??= new Promise<void>((resolve) => {
    const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, placeholder: 'API token', 'aria-label': 'API token' });
    const error = h('p', { class: 'error' });
    const dialog = h(
      'dialog',
      { class: 'token-dialog' },
      h(
        'form',
        {
          method: 'dialog',
          onsubmit: (ev: Event) => {
            const value = input.value.trim();
            if (!tokenPattern.test(value)) {
              ev.preventDefault();
              error.textContent = 'A token holds only A-Z a-z 0-9 . _ ~ + -';
              return;
            }
            sessionStorage.setItem(tokenKey, value);
            dialog.close();
            dialog.remove();
            asking = undefined;
            resolve();
          },
        },
        h('h2', {}, 'API token'),
        h('p', {}, why, ' It is kept for this tab only (sessionStorage).'),
        input,
        error,
        h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Continue')),
      ),
    );
    dialog.addEventListener('cancel', (ev) => ev.preventDefault());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return asking;
}
