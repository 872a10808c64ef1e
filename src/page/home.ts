/** `/`: the webhooks, and a form to create one. */
import { clear, h } from './dom.js';
import { apiJson } from './rest.js';

interface Webhook {
  id: string;
  url: string;
  createdAt: string;
  /** From the listing route: stored requests, counted up to a cap. */
  requestCount?: number;
  requestCountCapped?: boolean;
}

/** A page of `GET /api/webhooks`, newest first. */
function listWebhooks(before?: string): Promise<{ webhooks: Webhook[]; next: string | null }> {
  return apiJson(`/api/webhooks${before ? `?before=${encodeURIComponent(before)}` : ''}`);
}

export async function home(root: HTMLElement): Promise<void> {
  document.title = 'hooky';
  const listEl = h('ul', { class: 'webhooks' });
  const error = h('p', { class: 'error', role: 'alert' });
  const id = h('input', { name: 'id', placeholder: 'id (empty: generated)', pattern: '[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}', 'aria-label': 'Webhook id' });
  const status = h('input', { name: 'status', type: 'number', min: 200, max: 599, placeholder: '200', 'aria-label': 'Response status' });
  const ctype = h('input', { name: 'content-type', placeholder: 'content-type', 'aria-label': 'Response content type' });
  const body = h('textarea', { name: 'body', rows: 2, placeholder: 'response body (empty: {"ok":true,"id":…})', 'aria-label': 'Response body' });
  const delay = h('input', { name: 'delayMs', type: 'number', min: 0, max: 30000, placeholder: '0', 'aria-label': 'Response delay (ms)' });

  const more = h('button', { type: 'button', hidden: true, onclick: () => void refresh(more.dataset.next) }, 'More');
  async function refresh(before?: string) {
    try {
      const { webhooks, next } = await listWebhooks(before);
      if (!before) clear(listEl);
      more.hidden = !next;
      if (next) more.dataset.next = next;
      if (webhooks.length === 0 && !before) listEl.append(h('li', { class: 'muted' }, 'No webhook yet.'));
      for (const w of webhooks) {
        listEl.append(
          h(
            'li',
            { 'data-webhook-id': w.id },
            h('a', { href: `/inspect/${encodeURIComponent(w.id)}`, class: 'wid' }, w.id),
            h('code', { class: 'muted' }, w.url),
            w.requestCount !== undefined ? h('span', { class: 'muted' }, `${w.requestCount.toLocaleString()}${w.requestCountCapped ? '+' : ''} requests`) : null,
            h('span', { class: 'muted' }, new Date(w.createdAt).toLocaleString()),
            h('a', { href: `/inspect/${encodeURIComponent(w.id)}`, class: 'button' }, 'Open'),
            h(
              'button',
              {
                type: 'button',
                class: 'danger',
                onclick: async () => {
                  if (!confirm(`Delete webhook ${w.id} and all its requests?`)) return;
                  await apiJson(`/api/webhooks/${encodeURIComponent(w.id)}`, { method: 'DELETE' }).catch((err: Error) => (error.textContent = err.message));
                  void refresh();
                },
              },
              'Delete',
            ),
          ),
        );
      }
    } catch (err) {
      error.textContent = `Could not list webhooks: ${(err as Error).message}`;
    }
  }

  const form = h(
    'form',
    {
      class: 'create card',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        error.textContent = '';
        const response: Record<string, unknown> = {};
        if (status.value) response.status = Number(status.value);
        if (ctype.value.trim()) response.headers = { 'content-type': ctype.value.trim() };
        if (body.value) response.body = body.value;
        if (delay.value) response.delayMs = Number(delay.value);
        const input: Record<string, unknown> = {};
        if (id.value.trim()) input.id = id.value.trim();
        if (Object.keys(response).length) input.response = response;
        try {
          const created = await apiJson<Webhook>('/api/webhooks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
          location.assign(`/inspect/${encodeURIComponent(created.id)}`);
        } catch (err) {
          error.textContent = (err as Error).message;
        }
      },
    },
    h('h2', {}, 'New webhook'),
    h('div', { class: 'row' }, id, h('button', { type: 'submit', class: 'primary' }, 'Create')),
    h('details', {}, h('summary', {}, 'Custom response'), h('div', { class: 'row' }, field('status', status), field('content-type', ctype), field('delay (ms)', delay)), field('body', body)),
    error,
  );

  root.append(
    h('header', { class: 'top' }, h('a', { href: '/', class: 'brand' }, 'hooky'), h('span', { class: 'crumb' }, 'webhook inspector')),
    h('main', { class: 'home' }, form, h('section', { class: 'card' }, h('h2', {}, 'Webhooks'), listEl, more)),
  );
  await refresh();
}

const field = (label: string, input: HTMLElement) => h('label', { class: 'field' }, label, input);
