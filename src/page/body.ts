/**
 * The body pane: the captured bytes shown exactly. Each view is derived from the stored bytes and
 * never replaces them: pretty JSON keeps every token as sent (numbers, escapes), a compressed body
 * is decoded for display only, and a large body is shown in full, a chunk at a time as it scrolls.
 */
import type { CapturedRequest } from '../protocol.js';
import { bodyBytes, hexLines, mediaType, utf8 } from './bytes.js';
import { clear, download, formatSize, h } from './dom.js';

type View = 'pretty' | 'table' | 'parts' | 'raw' | 'hex';

const textChunk = 64 * 1024; // characters appended per step of a long text
const hexChunk = 16 * 1024; // bytes per step of a hex view

export async function renderBody(req: CapturedRequest, root: HTMLElement): Promise<void> {
  clear(root);
  const stored = bodyBytes(req);
  if (stored.length === 0) return void root.append(h('p', { class: 'muted' }, 'No body.'));
  const coding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  let bytes = stored;
  let note: string | undefined;
  if (coding === 'gzip' || coding === 'x-gzip' || coding === 'deflate') {
    try {
      bytes = await decompress(stored, coding === 'deflate' ? 'deflate' : 'gzip');
      note = `Decoded from ${coding} for display (${formatSize(stored.length)} stored, ${formatSize(bytes.length)} decoded). Download and copy as curl use the stored bytes.`;
    } catch (err) {
      note = `The body says content-encoding ${coding} but does not decode (${(err as Error).message}); shown as stored.`;
    }
  }
  const type = mediaType(req);
  const text = utf8(bytes);
  const views: View[] = [];
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(req.headers['content-type'] ?? '');
  let json = false;
  if (text !== undefined) {
    if (type.includes('json') || /^\s*[[{]/.test(text)) json = isJson(text);
    if (json || looksXml(type, text)) views.push('pretty');
    if (type === 'application/x-www-form-urlencoded') views.push('table');
  }
  if (type.startsWith('multipart/') && boundary) views.push('parts');
  if (text !== undefined) views.push('raw');
  views.push('hex');

  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const pane = h('div', { class: 'body-view' });
  const show = (view: View) => {
    for (const b of tabs.children) b.setAttribute('aria-selected', String((b as HTMLElement).dataset.view === view));
    clear(pane);
    if (view === 'pretty') lazyText(pane, json ? prettyJson(text!) : prettyXml(text!));
    else if (view === 'table') pane.append(formTable(text!));
    else if (view === 'parts') pane.append(partsView(bytes, (boundary![1] ?? boundary![2])!, req.id));
    else if (view === 'raw') lazyText(pane, text!);
    else lazyHex(pane, bytes);
  };
  const labels: Record<View, string> = { pretty: json ? 'JSON' : 'XML', table: 'Form', parts: 'Parts', raw: 'Raw', hex: 'Hex' };
  for (const view of views) tabs.append(h('button', { type: 'button', role: 'tab', 'data-view': view, onclick: () => show(view) }, labels[view]));
  root.append(
    h(
      'div',
      { class: 'body-head' },
      tabs,
      h('span', { class: 'muted' }, `${formatSize(stored.length)}${text === undefined ? ' · binary' : ''}`),
      h('button', { type: 'button', class: 'download-body', onclick: () => download(stored, `${req.id}.body`, req.headers['content-type'] || undefined) }, 'Download body'),
    ),
  );
  if (note) root.append(h('p', { class: 'note' }, note));
  root.append(pane);
  show(views[0]!);
}

async function decompress(bytes: Uint8Array, format: 'gzip' | 'deflate'): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function looksXml(type: string, text: string): boolean {
  if (!(type.includes('xml') || /^\s*<\?xml/.test(text))) return false;
  return new DOMParser().parseFromString(text, 'application/xml').getElementsByTagName('parsererror').length === 0;
}

/**
 * Re-indents JSON without re-serialising it: every string, number and literal is copied as it
 * was sent, so `1.50`, `1e3`, a 20-digit id or `\u00e9` read exactly as in the raw bytes.
 */
export function prettyJson(text: string): string {
  let out = '';
  let depth = 0;
  const nl = () => '\n' + '  '.repeat(depth);
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      let j = i + 1;
      while (/\s/.test(text[j] ?? '')) j++;
      if (text[j] === close) {
        out += c + close;
        i = j;
      } else {
        depth++;
        out += c + nl();
      }
    } else if (c === '}' || c === ']') {
      depth--;
      out += nl() + c;
    } else if (c === ',') out += ',' + nl();
    else if (c === ':') out += ': ';
    else if (!/\s/.test(c)) out += c;
  }
  return out;
}

/** One element per line, text kept as sent. */
export function prettyXml(text: string): string {
  const tokens = text.replace(/>\s+</g, '><').match(/<[^>]+>|[^<]+/g) ?? [];
  let depth = 0;
  const lines: string[] = [];
  for (const t of tokens) {
    if (t.startsWith('</')) {
      depth = Math.max(0, depth - 1);
      const last = lines.length - 1;
      // <a>text</a> stays on one line
      if (last >= 0 && !lines[last]!.trimStart().startsWith('<') && lines[last - 1]?.trimStart().startsWith('<') && !lines[last - 1]!.trimStart().startsWith('</')) {
        const txt = lines.pop()!.trim();
        lines[lines.length - 1] += txt + t;
        continue;
      }
      lines.push('  '.repeat(depth) + t);
    } else if (t.startsWith('<')) {
      lines.push('  '.repeat(depth) + t);
      if (!t.endsWith('/>') && !t.startsWith('<?') && !t.startsWith('<!')) depth++;
    } else lines.push('  '.repeat(depth) + t);
  }
  return lines.join('\n');
}

function formTable(text: string): HTMLElement {
  const rows = [...new URLSearchParams(text)].map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v)));
  return h('table', { class: 'kv' }, h('thead', {}, h('tr', {}, h('th', {}, 'name'), h('th', {}, 'value'))), h('tbody', {}, ...rows));
}

export interface Part {
  headers: Record<string, string>;
  name: string | undefined;
  filename: string | undefined;
  body: Uint8Array;
}

/** RFC 7578 parts, each body the exact bytes between its headers and the next delimiter. */
export function parseMultipart(bytes: Uint8Array, boundary: string): Part[] {
  const enc = new TextEncoder();
  const delim = enc.encode(`--${boundary}`);
  const parts: Part[] = [];
  let at = indexOf(bytes, delim, 0);
  while (at >= 0) {
    let start = at + delim.length;
    if (bytes[start] === 0x2d && bytes[start + 1] === 0x2d) break; // closing "--boundary--"
    if (bytes[start] === 0x0d && bytes[start + 1] === 0x0a) start += 2;
    const next = indexOf(bytes, enc.encode(`\r\n--${boundary}`), start);
    if (next < 0) break;
    const headEnd = indexOf(bytes, enc.encode('\r\n\r\n'), start);
    const hasHead = headEnd >= 0 && headEnd < next;
    const headers: Record<string, string> = {};
    if (hasHead) {
      for (const line of new TextDecoder().decode(bytes.subarray(start, headEnd)).split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    }
    const disposition = headers['content-disposition'] ?? '';
    parts.push({
      headers,
      name: /\bname="([^"]*)"/i.exec(disposition)?.[1],
      filename: /\bfilename="([^"]*)"/i.exec(disposition)?.[1],
      body: bytes.subarray(hasHead ? headEnd + 4 : start, next),
    });
    at = next + 2;
  }
  return parts;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  outer: for (let i = hay.indexOf(first!, from); i >= 0 && i <= hay.length - needle.length; i = hay.indexOf(first!, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function partsView(bytes: Uint8Array, boundary: string, requestId: string): HTMLElement {
  const parts = parseMultipart(bytes, boundary);
  if (parts.length === 0) return h('p', { class: 'note' }, `No part found for boundary "${boundary}".`);
  return h(
    'ol',
    { class: 'parts' },
    ...parts.map((part, i) => {
      const content = h('div', { class: 'part-body' });
      const text = utf8(part.body);
      const open = () => {
        clear(content);
        if (text !== undefined && !(part.headers['content-type'] ?? '').startsWith('application/octet-stream')) lazyText(content, text);
        else lazyHex(content, part.body);
      };
      const name = part.filename ?? part.name ?? `part-${i + 1}`;
      const item = h(
        'li',
        { class: 'part', 'data-part': i },
        h(
          'div',
          { class: 'part-head' },
          h('strong', {}, part.name ?? '(no name)'),
          part.filename ? h('span', {}, ` file "${part.filename}"`) : null,
          h('span', { class: 'muted' }, ` ${part.headers['content-type'] ?? 'text/plain'} · ${formatSize(part.body.length)}`),
          h('button', { type: 'button', class: 'download-part', onclick: () => download(part.body, name.replace(/[/\\]/g, '_') || `${requestId}-${i}`) }, 'Download'),
        ),
        content,
      );
      open();
      return item;
    }),
  );
}

/** A <pre> that shows the first chunk and appends the next as its end scrolls into view. */
function lazyText(root: HTMLElement, text: string): void {
  lazy(root, text.length, (from, to) => text.slice(from, to), textChunk, 'characters');
}

function lazyHex(root: HTMLElement, bytes: Uint8Array): void {
  lazy(root, bytes.length, (from, to) => hexLines(bytes, from, to), hexChunk, 'bytes', 'hex');
}

function lazy(root: HTMLElement, total: number, slice: (from: number, to: number) => string, step: number, unit: string, cls = ''): void {
  const pre = h('pre', { class: `body ${cls}` });
  const status = h('span');
  const all = h('button', { type: 'button', onclick: () => { while (shown < total) more(); } }, 'Show all');
  const bar = h('p', { class: 'muted more' }, status, ' ', all);
  const sentinel = h('div', { class: 'sentinel' });
  let shown = 0;
  const more = () => {
    if (shown >= total) return;
    const to = Math.min(total, shown + step);
    pre.append(slice(shown, to));
    shown = to;
    status.textContent = shown < total ? `Showing ${shown.toLocaleString()} of ${total.toLocaleString()} ${unit}; scroll for more.` : '';
    if (shown >= total) {
      observer?.disconnect();
      bar.remove();
    }
  };
  const observer = total > step ? new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && more()) : undefined;
  more();
  root.append(pre);
  if (total > step) {
    root.append(bar, sentinel);
    observer!.observe(sentinel);
  }
}
