/**
 * `/inspect/<webhookId>`: the capture URL, the live list and the detail of one request. Over 300
 * lines because it is the page's wiring: the list (list.ts), the body views (body.ts), the panes
 * (panes.ts) and the live stream share this page's state (filters, follow, unread, the connection
 * indicator), which lives here once.
 */
import { createClient, type HookyClient } from '../client/index.js';
import type { CapturedRequest } from '../protocol.js';
import { queryString } from './bytes.js';
import { renderBody } from './body.js';
import { clear, copy, download, h } from './dom.js';
import { createList } from './list.js';
import { api, apiJson, ApiError, token } from './rest.js';
import { curlOf, resendPane, signaturePane } from './panes.js';

interface Webhook {
  id: string;
  url: string;
  createdAt: string;
  response: { status?: number; headers?: Record<string, string>; body?: string; delayMs?: number } | null;
}

interface Page {
  requests: CapturedRequest[];
  next: string | null;
}

interface Filters {
  method?: string;
  path?: string;
  header?: string;
  q?: string;
}

const firstPage = 100;
const olderPage = 250;
const followDetailMs = 250;
/** How long the stored requests wait for the live join before they are read anyway. */
const joinWaitMs = 2000;

export async function inspector(root: HTMLElement, webhookId: string): Promise<void> {
  document.title = `${webhookId} · hooky`;
  let webhook: Webhook;
  try {
    webhook = await apiJson<Webhook>(`/api/webhooks/${encodeURIComponent(webhookId)}`);
  } catch (err) {
    root.append(h('main', { class: 'empty' }, h('h1', {}, 'Webhook not found'), h('p', {}, (err as Error).message), h('p', {}, h('a', { href: '/' }, 'All webhooks'))));
    return;
  }
  const base = `/api/webhooks/${encodeURIComponent(webhookId)}`;

  // --- connection indicator -------------------------------------------------------------
  const conn = h('span', { class: 'conn', 'data-connection-state': 'offline', role: 'status', 'aria-live': 'polite' }, 'connecting…');
  let countdown: ReturnType<typeof setInterval> | undefined;
  const setConn = (state: 'connected' | 'reconnecting' | 'offline', text: string) => {
    conn.dataset.connectionState = state;
    conn.textContent = text;
  };

  // --- header ---------------------------------------------------------------------------
  const url = webhook.url;
  const curl = `curl -X POST '${url}' -H 'content-type: application/json' -d '{"hello":"world"}'`;
  const httpie = `http POST '${url}' hello=world`;
  const resp = webhook.response;
  const top = h(
    'header',
    { class: 'top' },
    h('a', { href: '/', class: 'brand' }, 'hooky'),
    h('span', { class: 'crumb' }, '/ ', h('strong', {}, webhookId)),
    conn,
  );
  const exportLink = (format: 'ndjson' | 'har', label: string) =>
    h(
      'a',
      {
        href: `${base}/export?format=${format}`,
        // The name the server gives it (Content-Disposition).
        download: `hooky-${webhookId}.${format}`,
        class: 'button',
        onclick: (ev: Event) => {
          // A link cannot carry the Bearer header: with a token, fetch and save.
          if (!token()) return;
          ev.preventDefault();
          void api(`${base}/export?format=${format}`).then(async (res) => download(await res.blob(), `hooky-${webhookId}.${format}`));
        },
      },
      label,
    );
  const capture = h(
    'section',
    { class: 'capture' },
    h(
      'div',
      { class: 'url-row' },
      h('code', { class: 'capture-url' }, url),
      h('button', { type: 'button', class: 'primary', onclick: (ev: Event) => copy(url, ev.currentTarget as HTMLElement) }, 'Copy URL'),
      exportLink('ndjson', 'Export NDJSON'),
      exportLink('har', 'Export HAR'),
    ),
    h(
      'details',
      { class: 'examples' },
      h('summary', {}, 'Send a test request'),
      example('curl', curl),
      example('HTTPie', httpie),
    ),
    h(
      'p',
      { class: 'muted response' },
      'Answers captures with ',
      resp
        ? h('code', {}, `${resp.status ?? 200} ${resp.headers?.['content-type'] ?? ''} ${resp.body ? JSON.stringify(resp.body.length > 80 ? resp.body.slice(0, 80) + '…' : resp.body) : ''}${resp.delayMs ? ` after ${resp.delayMs} ms` : ''}`)
        : h('code', {}, '200 {"ok":true,"id":…}'),
      ' (custom response set at creation).',
    ),
  );

  // --- list -----------------------------------------------------------------------------
  const detail = h('main', { class: 'detail', 'aria-label': 'Request detail' }, h('p', { class: 'empty muted' }, 'Select a request, or send one to the URL above.'));
  let follow = true;
  // A click or a key draws the detail on the next frame. Following a fast stream draws it at
  // most every `followDetailMs`, of the newest request: drawing it per arrival at 100/s would
  // keep the main thread busy and delay the list itself.
  let shownNext: CapturedRequest | undefined;
  let detailTimer: ReturnType<typeof setTimeout> | undefined;
  let lastDetailAt = 0;
  const queueDetail = (req: CapturedRequest, now: boolean) => {
    shownNext = req;
    if (detailTimer !== undefined) {
      if (!now) return;
      clearTimeout(detailTimer);
    }
    const wait = now ? 0 : Math.max(0, lastDetailAt + followDetailMs - performance.now());
    detailTimer = setTimeout(() => {
      requestAnimationFrame(() => {
        detailTimer = undefined;
        lastDetailAt = performance.now();
        void showDetail(shownNext!);
      });
    }, wait);
  };
  const list = createList({
    onSelect(req, byUser) {
      if (byUser && req.id !== list.newest()?.id) setFollow(false);
      // On a phone the detail covers the list: open it for a tap, not for each arrival followed.
      if (byUser) document.body.classList.add('show-detail');
      if (detail.dataset.detailId !== req.id || shownNext?.id !== req.id) queueDetail(req, byUser);
      updateCounts();
    },
  });
  const followBox = h('input', { type: 'checkbox', checked: true, onchange: () => setFollow(followBox.checked) });
  const setFollow = (on: boolean) => {
    follow = on;
    followBox.checked = on;
    if (on) {
      list.scrollToTop();
      const newest = list.newest();
      if (newest) list.select(newest.id);
    }
  };
  const count = h('span', { class: 'count muted' });
  const updateCounts = () => {
    const unread = list.unreadCount();
    count.textContent = `${list.size.toLocaleString()} loaded${unread ? ` · ${unread} unread` : ''}`;
    document.title = `${unread ? `(${unread}) ` : ''}${webhookId} · hooky`;
  };
  const olderButton = h('button', { type: 'button', class: 'load-older', onclick: () => void loadOlder() }, 'Load older');
  const listStatus = h('span', { class: 'muted' });
  const searchNote = h('p', { class: 'note search-note', hidden: true });

  // --- search and filter: answered by the server over every stored request ---------------------
  let filters: Filters = {};
  let hiddenLive = 0;
  const methodSel = h('select', { name: 'method', 'aria-label': 'Method' }, ...['', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => h('option', { value: m }, m || 'any method')));
  const pathIn = h('input', { name: 'path', placeholder: 'path contains', 'aria-label': 'Path' });
  const headerIn = h('input', { name: 'header', placeholder: 'header (name or name: value)', 'aria-label': 'Header' });
  const qIn = h('input', { name: 'q', type: 'search', placeholder: 'text in body', 'aria-label': 'Body text' });
  const searchForm = h(
    'form',
    {
      class: 'filters',
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        const f: Filters = {};
        if (methodSel.value) f.method = methodSel.value;
        if (pathIn.value.trim()) f.path = pathIn.value.trim();
        if (headerIn.value.trim()) f.header = headerIn.value.trim();
        if (qIn.value) f.q = qIn.value;
        void applyFilters(f);
      },
    },
    h('div', { class: 'search-row' }, qIn, h('button', { type: 'submit', class: 'primary' }, 'Search'), h('button', { type: 'button', onclick: () => { searchForm.reset(); void applyFilters({}); } }, 'Clear')),
    h('div', { class: 'filter-row' }, methodSel, pathIn, headerIn),
  );
  const searching = () => Object.keys(filters).length > 0;
  const queryOf = (extra: Record<string, string>) => {
    const q = new URLSearchParams(extra);
    for (const [k, v] of Object.entries(filters)) q.set(k, v);
    return q.toString();
  };

  let cursor: string | null | undefined; // the server's `next`; null: nothing older
  let generation = 0; // a reset makes answers to earlier requests stale
  /**
   * Reads pages newest first until `limit` requests were added. A filtered page may come back short,
   * even empty, with a `next` (the server examines a bounded number of rows per page): follow it.
   */
  async function loadPage(limit: number, before?: string): Promise<void> {
    const gen = generation;
    olderButton.disabled = true;
    listStatus.textContent = 'loading…';
    try {
      let added = 0;
      let from = before;
      for (let pages = 0; added < limit && pages < 50; pages++) {
        const q: Record<string, string> = { limit: String(limit - added) };
        if (from) q.before = from;
        const page = await apiJson<Page>(`${base}/requests?${queryOf(q)}`);
        if (gen !== generation) return;
        added += list.add(page.requests);
        cursor = page.next;
        if (cursor === null) break;
        from = cursor;
        if (!searching()) break;
      }
      listStatus.textContent = '';
    } catch (err) {
      if (gen !== generation) return;
      listStatus.textContent = err instanceof ApiError && err.code === 'invalid_request' && searching() ? `search refused: ${err.message}` : `could not load: ${(err as Error).message}`;
    } finally {
      if (gen === generation) {
        showOlder();
        updateCounts();
      }
    }
  }
  /** The Load older button as the cursor stands: null, nothing older. */
  function showOlder() {
    olderButton.disabled = cursor === null;
    olderButton.textContent = cursor === null ? 'No older requests' : 'Load older';
  }
  const loadOlder = async () => {
    await loadPage(olderPage, cursor ?? list.oldest()?.id);
    noteMatches();
  };
  /** The search note counts what is loaded, and says whether more may match. */
  const noteMatches = () => {
    if (searching()) searchNote.textContent = `${list.size}${cursor ? '+' : ''} matching request${list.size === 1 ? '' : 's'}; new requests are not added while searching.`;
  };

  async function applyFilters(f: Filters) {
    filters = f;
    generation++;
    hiddenLive = 0;
    cursor = undefined;
    list.reset();
    clear(detail);
    searchNote.hidden = !searching();
    searchNote.textContent = searching() ? 'Showing search results from every stored request; new requests are not added while searching.' : '';
    await loadPage(firstPage);
    noteMatches();
  }

  const deleteAll = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      onclick: async () => {
        if (!confirm(`Delete every request of ${webhookId}?`)) return;
        try {
          await apiJson(`${base}/requests`, { method: 'DELETE' });
          generation++;
          list.reset();
          cursor = null;
          showOlder();
          clear(detail);
          updateCounts();
        } catch (err) {
          alert(`Could not delete: ${(err as Error).message}`);
        }
      },
    },
    'Delete all',
  );

  const listPane = h(
    'aside',
    { class: 'list-pane' },
    searchForm,
    searchNote,
    h('div', { class: 'list-tools' }, count, h('label', { class: 'follow' }, followBox, ' follow newest'), h('button', { type: 'button', onclick: () => { list.markAllRead(); updateCounts(); } }, 'Mark read')),
    list.el,
    h('div', { class: 'list-foot' }, olderButton, listStatus, h('span', { class: 'spacer-flex' }), deleteAll),
  );
  root.append(top, capture, h('div', { class: 'main' }, listPane, detail));

  // --- detail ---------------------------------------------------------------------------
  const resendResults = new Map<string, HTMLElement>();
  const checks = new Map<string, HTMLElement>();
  async function showDetail(req: CapturedRequest) {
    const full = `${req.path}${queryString(req)}`;
    const bodyRoot = h('div', { class: 'body-root' });
    const context = { webhookId, base, checks, resendResults };
    const sig = signaturePane(req, context);
    const resend = resendPane(req, context);
    const summary: [string, string][] = [
      ['method', req.method],
      ['path', full],
      ['time', `${req.timestamp} (${new Date(req.timestamp).toLocaleString()})`],
      ['id', req.id],
      ['size', `${req.size.toLocaleString()} bytes`],
      ['source IP', req.sourceIp],
      ['user agent', req.userAgent ?? '—'],
    ];
    detail.replaceChildren(
      h(
        'div',
        { class: 'detail-head' },
        h('button', { type: 'button', class: 'back', onclick: () => document.body.classList.remove('show-detail') }, '← List'),
        h('span', { class: `method m-${req.method}` }, req.method),
        h('code', { class: 'detail-path' }, full),
        h('span', { class: 'spacer-flex' }),
        h('button', { type: 'button', onclick: (ev: Event) => copy(curlOf(req, url), ev.currentTarget as HTMLElement) }, 'Copy as curl'),
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              try {
                await apiJson(`${base}/requests/${req.id}`, { method: 'DELETE' });
                list.remove(req.id);
                detail.replaceChildren(h('p', { class: 'empty muted' }, 'Deleted.'));
                updateCounts();
              } catch (err) {
                alert(`Could not delete: ${(err as Error).message}`);
              }
            },
          },
          'Delete',
        ),
      ),
      kvTable('Summary', summary, 'summary'),
      sig,
      h('section', { class: 'card' }, h('h3', {}, 'Body'), bodyRoot),
      kvTable('Headers', Object.entries(req.headers), 'headers'),
      kvTable('Query', Object.entries(req.queryParams).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, x] as [string, string])), 'query'),
      resend,
    );
    detail.scrollTop = 0;
    detail.dataset.detailId = req.id;
    list.markRead(req.id);
    updateCounts();
    await renderBody(req, bodyRoot);
  }

  // --- keyboard -------------------------------------------------------------------------
  document.addEventListener('keydown', (ev) => {
    const t = ev.target as HTMLElement;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || t.closest('input, textarea, select, dialog')) return;
    if (ev.key === 'j' || ev.key === 'ArrowDown') list.move(1);
    else if (ev.key === 'k' || ev.key === 'ArrowUp') list.move(-1);
    else if (ev.key === '/') qIn.focus();
    else return;
    ev.preventDefault();
  });

  // --- live stream ----------------------------------------------------------------------
  const t = token();
  const client: HookyClient = createClient(location.origin, t ? { token: t } : {});
  let everConnected = false;
  let lostAt: number | undefined;
  let resume: { at: number; filled: number; gap: string } | undefined;
  client.on('connected', () => {
    if (countdown) clearInterval(countdown);
    if (!everConnected) setConn('connected', 'live');
  });
  client.on('joined', () => {
    if (!everConnected) {
      everConnected = true;
      return;
    }
    const now = Date.now();
    const gap = (now - (lostAt ?? now)) / 1000;
    resume = { at: now, filled: 0, gap: gap < 1 ? '<1 s' : `${gap.toFixed(0)} s` };
    setConn('connected', `live · resumed after ${resume.gap}, 0 filled in`);
  });
  // Filled in: requests the resume replayed, i.e. captured (by their timestamp) before the rejoin.
  client.on('new-request', (req) => {
    if (resume && Date.parse(req.timestamp) <= resume.at) {
      resume.filled++;
      setConn('connected', `live · resumed after ${resume.gap}, ${resume.filled} filled in`);
    }
    if (searching()) {
      hiddenLive++;
      searchNote.textContent = `${hiddenLive} new request${hiddenLive === 1 ? '' : 's'} arrived; clear the search to see ${hiddenLive === 1 ? 'it' : 'them'}.`;
      return;
    }
    list.add([req], true);
    if (follow) {
      list.scrollToTop();
      list.select(req.id);
    }
    updateCounts();
  });
  client.on('disconnect', ({ reason }) => {
    lostAt ??= Date.now();
    setConn('reconnecting', `connection lost (${reason})`);
  });
  client.on('reconnecting', ({ attempt, delay }) => {
    lostAt ??= Date.now();
    const due = Date.now() + delay;
    // A browser hides the status of a refused upgrade (docs/client.md): a page that never got
    // through says where to look rather than only counting attempts.
    const hint = everConnected || attempt < 3 ? '' : ' · never connected: is /ws refused (HOOKY_ALLOWED_ORIGINS, the API token, a proxy)? The browser console shows the status';
    const tick = () => setConn('reconnecting', `reconnecting · attempt ${attempt}, next try in ${Math.max(0, (due - Date.now()) / 1000).toFixed(1)} s${hint}`);
    if (countdown) clearInterval(countdown);
    tick();
    countdown = setInterval(() => (Date.now() >= due ? (clearInterval(countdown), setConn('reconnecting', `reconnecting · attempt ${attempt}…`)) : tick()), 200);
  });
  client.on('error', (e) => {
    if (e.code === 'REFUSED') setConn('offline', `offline · ${e.message}`);
    else if (e.code === 'WEBHOOK_DELETED' || e.code === 'WEBHOOK_NOT_FOUND') setConn('offline', 'offline · this webhook was deleted');
  });
  client.on('joined', () => {
    lostAt = undefined;
  });
  // The browser knows at once when the network is gone; the SDK would find out at its next ping.
  window.addEventListener('offline', () => setConn('offline', 'offline · this device has no network'));
  window.addEventListener('online', () => {
    if (conn.dataset.connectionState === 'offline') setConn('reconnecting', 'network back · reconnecting…');
  });
  const joined = client.join(webhookId).then(
    () => true,
    (err: unknown) => {
      setConn('offline', `offline · ${(err as Error).message}`);
      return false;
    },
  );
  // The REST page is read after the join took effect: everything before is in it, everything
  // after arrives live, and the list drops what comes both ways. A join that has not taken
  // effect after a while (a browser retries a refused upgrade without end) does not keep the
  // stored requests off the screen: they are read now, and read again once it does.
  const inTime = await Promise.race([joined, new Promise<undefined>((r) => setTimeout(r, joinWaitMs))]);
  await loadPage(firstPage);
  if (inTime === undefined) {
    void joined.then(async (ok) => {
      if (ok && !searching()) await loadPage(firstPage);
    });
  }
  const newest = list.newest();
  if (newest && follow) list.select(newest.id);
  (window as unknown as { hookyInspector: unknown }).hookyInspector = { ids: () => list.ids(), client };
}

function example(label: string, text: string): HTMLElement {
  return h('div', { class: 'example' }, h('span', { class: 'muted' }, label), h('code', {}, text), h('button', { type: 'button', onclick: (ev: Event) => copy(text, ev.currentTarget as HTMLElement) }, 'Copy'));
}

function kvTable(title: string, rows: [string, string][], cls: string): HTMLElement {
  return h(
    'section',
    { class: `card ${cls}` },
    h('h3', {}, title, cls === 'summary' ? null : h('span', { class: 'muted' }, ` · ${rows.length}`)),
    rows.length === 0 ? h('p', { class: 'muted' }, 'none') : h('table', { class: 'kv' }, h('tbody', {}, ...rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))),
  );
}

