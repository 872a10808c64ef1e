/**
 * The request list, virtualised: only the rows on screen (plus a few) exist in the DOM, so 10,000
 * requests cost 10,000 objects and a couple of dozen elements. Rows are a fixed height; the
 * scroll area is sized to hold them all. Requests are kept oldest first (live ones are appended),
 * shown newest first.
 */
import type { CapturedRequest } from '../protocol.js';
import { queryString } from './bytes.js';
import { clockTime, formatSize, h, relativeTime } from './dom.js';

export interface ListOptions {
  onSelect(req: CapturedRequest, byUser: boolean): void;
}

const overscan = 6;

export function createList(opts: ListOptions) {
  const asc: CapturedRequest[] = [];
  const byId = new Map<string, CapturedRequest>();
  const unread = new Set<string>();
  let selected: string | undefined;
  const spacer = h('div', { class: 'spacer' });
  const el = h('div', { class: 'list', role: 'listbox', tabindex: 0, 'aria-label': 'Captured requests' }, spacer);
  const pool: HTMLElement[] = [];
  let rowHeight = 0;
  let scheduled = false;

  const at = (view: number) => asc[asc.length - 1 - view];
  const viewIndex = (id: string) => {
    // Binary search in the ascending array, then flip to the newest-first index.
    let lo = 0;
    let hi = asc.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = asc[mid]!.id;
      if (v === id) return asc.length - 1 - mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  };

  function measure() {
    rowHeight = parseFloat(getComputedStyle(el).getPropertyValue('--row')) || 58;
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(render);
  }

  // Rows are keyed by request: when a request arrives on top, the rows on screen only move
  // (a transform, composited) and one row is filled, instead of every row being rebuilt.
  const rowOf = new Map<string, HTMLElement>();

  function render() {
    scheduled = false;
    if (!rowHeight) measure();
    spacer.style.height = `${asc.length * rowHeight}px`;
    const first = Math.max(0, Math.floor(el.scrollTop / rowHeight) - overscan);
    const count = Math.max(0, Math.min(asc.length - first, Math.ceil(el.clientHeight / rowHeight) + 2 * overscan));
    const now = Date.now();
    const wanted = new Set<string>();
    for (let i = 0; i < count; i++) wanted.add(at(first + i)!.id);
    const free: HTMLElement[] = [];
    for (const [id, row] of rowOf) {
      if (wanted.has(id)) continue;
      rowOf.delete(id);
      free.push(row);
    }
    for (const row of pool) if (row.dataset.requestId === undefined) free.push(row);
    for (let i = 0; i < count; i++) {
      const req = at(first + i)!;
      let row = rowOf.get(req.id);
      if (!row) {
        row = free.pop() ?? newRow();
        rowOf.set(req.id, row);
        fill(row, req);
      }
      row.hidden = false;
      row.style.transform = `translateY(${(first + i) * rowHeight}px)`;
      const rel = row.querySelector('.rel')!;
      const text = relativeTime(Date.parse(req.timestamp), now);
      if (rel.textContent !== text) rel.textContent = text;
      row.classList.toggle('unread', unread.has(req.id));
      row.classList.toggle('selected', req.id === selected);
      row.setAttribute('aria-selected', String(req.id === selected));
    }
    for (const row of free) {
      row.hidden = true;
      delete row.dataset.requestId;
    }
  }

  function newRow(): HTMLElement {
    const row = h('div', { class: 'row', role: 'option' });
    row.addEventListener('click', () => {
      const req = byId.get(row.dataset.requestId ?? '');
      if (req) select(req.id, true);
    });
    pool.push(row);
    el.append(row);
    return row;
  }

  function fill(row: HTMLElement, req: CapturedRequest) {
    row.dataset.requestId = req.id;
    const type = (req.headers['content-type'] ?? '').split(';')[0] || '—';
    row.replaceChildren(
      h(
        'div',
        { class: 'line1' },
        h('span', { class: `method m-${/^[A-Z]+$/.test(req.method) ? req.method : 'OTHER'}` }, req.method),
        h('span', { class: 'path', title: req.path + queryString(req) }, req.path + queryString(req)),
        h('span', { class: 'dot', 'aria-label': 'unread' }),
      ),
      h(
        'div',
        { class: 'line2' },
        h('span', {}, formatSize(req.size)),
        h('span', { class: 'ctype' }, type),
        h('span', { class: 'ip' }, req.sourceIp),
        h('time', { datetime: req.timestamp }, clockTime(req.timestamp)),
        h('span', { class: 'rel' }),
      ),
    );
  }

  /** Adds requests (any order); those already listed are skipped. Returns how many were new. */
  function add(reqs: readonly CapturedRequest[], markUnread = false): number {
    let added = 0;
    let addedAbove = 0;
    const topId = at(Math.floor(el.scrollTop / (rowHeight || 58)))?.id;
    for (const req of reqs) {
      if (byId.has(req.id)) continue;
      byId.set(req.id, req);
      added++;
      if (topId !== undefined && req.id > topId) addedAbove++;
      if (markUnread) unread.add(req.id);
      const last = asc[asc.length - 1];
      if (last === undefined || req.id > last.id) asc.push(req);
      else if (req.id < asc[0]!.id) asc.unshift(req);
      else {
        let lo = 0;
        let hi = asc.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (asc[mid]!.id < req.id) lo = mid + 1;
          else hi = mid;
        }
        asc.splice(lo, 0, req);
      }
    }
    // Keep what the reader looks at in place when rows are inserted above it.
    if (addedAbove > 0 && el.scrollTop > 0) el.scrollTop += addedAbove * rowHeight;
    if (added) schedule();
    return added;
  }

  function remove(id: string) {
    const v = viewIndex(id);
    if (v < 0) return;
    asc.splice(asc.length - 1 - v, 1);
    byId.delete(id);
    unread.delete(id);
    if (selected === id) selected = undefined;
    rowOf.delete(id);
    for (const row of pool) if (row.dataset.requestId === id) delete row.dataset.requestId;
    schedule();
  }

  function reset() {
    asc.length = 0;
    byId.clear();
    unread.clear();
    selected = undefined;
    rowOf.clear();
    for (const row of pool) delete row.dataset.requestId;
    el.scrollTop = 0;
    schedule();
  }

  function select(id: string, byUser = false) {
    const req = byId.get(id);
    if (!req) return;
    selected = id;
    scrollIntoView(viewIndex(id));
    schedule();
    opts.onSelect(req, byUser);
  }

  function scrollIntoView(v: number) {
    if (!rowHeight) measure();
    const top = v * rowHeight;
    if (top < el.scrollTop) el.scrollTop = top;
    else if (top + rowHeight > el.scrollTop + el.clientHeight) el.scrollTop = top + rowHeight - el.clientHeight;
  }

  /** Moves the selection by `delta` rows (positive: older). */
  function move(delta: number) {
    if (asc.length === 0) return;
    const cur = selected === undefined ? -1 : viewIndex(selected);
    const next = Math.max(0, Math.min(asc.length - 1, cur < 0 ? 0 : cur + delta));
    select(at(next)!.id, true);
  }

  el.addEventListener('scroll', schedule, { passive: true });
  new ResizeObserver(() => {
    measure();
    schedule();
  }).observe(el);
  setInterval(schedule, 1000); // relative times

  return {
    el,
    add,
    remove,
    reset,
    select,
    move,
    get size() {
      return asc.length;
    },
    get selected() {
      return selected === undefined ? undefined : byId.get(selected);
    },
    newest: () => at(0),
    oldest: () => asc[0],
    has: (id: string) => byId.has(id),
    /** Its detail was shown. */
    markRead(id: string) {
      if (unread.delete(id)) schedule();
    },
    unreadCount: () => unread.size,
    markAllRead() {
      unread.clear();
      schedule();
    },
    /** Newest first, as shown. */
    ids: () => asc.map((r) => r.id).reverse(),
    scrollToTop() {
      el.scrollTop = 0;
      schedule();
    },
  };
}

export type RequestList = ReturnType<typeof createList>;
