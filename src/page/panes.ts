/**
 * The parts of a request's detail pane that act on it: the signature check, resend, and copy as
 * curl. Verdicts and resend answers are kept per request while the page lives (`PaneContext`).
 */
import type { CapturedRequest } from '../protocol.js';
import { bodyBytes, queryString, toBase64, utf8 } from './bytes.js';
import { h } from './dom.js';
import { apiJson, ApiError } from './rest.js';
import { detectScheme, schemeNames, schemes, verify, type Scheme } from './signatures.js';

export interface PaneContext {
  webhookId: string;
  /** `/api/webhooks/<id>` */
  base: string;
  checks: Map<string, HTMLElement>;
  resendResults: Map<string, HTMLElement>;
}

/** The signature check of one request: the secret stays in this browser (localStorage). */
export function signaturePane(req: CapturedRequest, { webhookId, checks }: PaneContext): HTMLElement {
  const detected = detectScheme(req);
  const schemeSel = h('select', { name: 'scheme', 'aria-label': 'Signature scheme' }, ...schemes.map((s) => h('option', { value: s, selected: s === (detected ?? 'generic') }, schemeNames[s])));
  const secretKey = () => `hooky.secret.${webhookId}.${schemeSel.value}`;
  const secret = h('input', { type: 'password', name: 'secret', placeholder: 'signing secret (stays in this browser)', autocomplete: 'off', 'aria-label': 'Signing secret' });
  const headerName = h('input', { name: 'sig-header', value: localStorage.getItem(`hooky.sigheader.${webhookId}`) ?? 'x-signature', 'aria-label': 'Signature header', class: 'sig-header' });
  // Verdicts and resend answers stay with their request while the page lives (kept only once made).
  const out = checks.get(req.id) ?? h('span', { class: 'verdict' });
  const run = async () => {
    if (!secret.value) return;
    delete out.dataset.verdict;
    out.textContent = 'checking…';
    localStorage.setItem(secretKey(), secret.value);
    localStorage.setItem(`hooky.sigheader.${webhookId}`, headerName.value);
    const check = await verify(req, schemeSel.value as Scheme, secret.value, headerName.value);
    checks.set(req.id, out);
    out.dataset.verdict = check.verdict;
    out.textContent = `${check.verdict === 'skew' ? 'timestamp skew' : check.verdict}: ${check.detail}`;
  };
  const loadSecret = () => {
    secret.value = localStorage.getItem(secretKey()) ?? '';
    headerName.hidden = schemeSel.value !== 'generic';
  };
  schemeSel.addEventListener('change', () => {
    loadSecret();
    void run();
  });
  loadSecret();
  if (secret.value && !out.dataset.verdict) void run();
  return h(
    'section',
    { class: 'card signature' },
    h('h3', {}, 'Signature', detected ? h('span', { class: 'muted' }, ` · ${schemeNames[detected]} headers found`) : null),
    h(
      'form',
      { class: 'row', onsubmit: (ev: Event) => { ev.preventDefault(); void run(); } },
      schemeSel,
      headerName,
      secret,
      h('button', { type: 'submit' }, 'Verify'),
    ),
    out,
  );
}

/** Resend from the server (`POST …/resend`) and what the target answered. */
export function resendPane(req: CapturedRequest, { webhookId, base, resendResults }: PaneContext): HTMLElement {
  const target = h('input', { type: 'url', name: 'target', required: true, placeholder: 'http://localhost:4000/webhooks', value: localStorage.getItem(`hooky.resend.${webhookId}`) ?? '', 'aria-label': 'Resend target' });
  const out = resendResults.get(req.id) ?? h('div', { class: 'resend-result' });
  return h(
    'section',
    { class: 'card resend' },
    h('h3', {}, 'Resend', h('span', { class: 'muted' }, ' · from the server: method, sub-path, query, headers and exact body')),
    h(
      'form',
      {
        class: 'row',
        onsubmit: async (ev: Event) => {
          ev.preventDefault();
          localStorage.setItem(`hooky.resend.${webhookId}`, target.value);
          resendResults.set(req.id, out);
          out.replaceChildren(h('span', { class: 'muted' }, 'sending…'));
          try {
            const r = await apiJson<Resent>(`${base}/requests/${req.id}/resend`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: target.value }) });
            out.replaceChildren(resendView(r));
          } catch (err) {
            out.replaceChildren(h('p', { class: 'error' }, err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String(err)));
          }
        },
      },
      target,
      h('button', { type: 'submit' }, 'Resend'),
    ),
    out,
  );
}

interface Resent {
  url?: string;
  status: number;
  statusText?: string;
  headers?: Record<string, string>;
  body?: string | null;
  bodyEncoding?: 'utf8' | 'base64';
  size?: number;
  truncated?: boolean;
  durationMs?: number;
}

/** The target's answer to a resend: status, timing, headers and the body excerpt. */
function resendView(r: Resent): HTMLElement {
  const headers = r.headers ?? {};
  return h(
    'div',
    {},
    h(
      'p',
      {},
      h('strong', { class: 'resend-status' }, String(r.status)),
      ` ${r.statusText ?? ''}`,
      r.durationMs !== undefined ? ` in ${r.durationMs} ms` : '',
      r.url ? h('span', { class: 'muted' }, ` from ${r.url}`) : null,
    ),
    Object.keys(headers).length ? h('table', { class: 'kv' }, h('tbody', {}, ...Object.entries(headers).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))) : null,
    r.body === undefined || r.body === null
      ? h('p', { class: 'muted' }, 'No body.')
      : h('pre', { class: 'body' }, r.bodyEncoding === 'base64' ? `(binary, base64) ${r.body}` : r.body),
    r.truncated ? h('p', { class: 'note' }, `Only the first part of the ${r.size !== undefined ? `${r.size.toLocaleString()}-byte ` : ''}answer is shown: the server reads at most 64 KiB.`) : null,
  );
}

// Not forwarded: hop-by-hop headers (RFC 9110 §7.6.1) and those curl sets itself from the body.
const skipHeaders = new Set(['host', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection']);

/** A curl command that sends the same method, path, query, headers and byte-identical body. */
export function curlOf(req: CapturedRequest, captureUrl: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const parts = [`curl -X ${req.method} ${q(captureUrl + (req.path === '/' ? '' : req.path) + queryString(req))}`];
  for (const [k, v] of Object.entries(req.headers)) if (!skipHeaders.has(k)) parts.push(`-H ${q(`${k}: ${v}`)}`);
  const bytes = bodyBytes(req);
  if (bytes.length === 0) return parts.join(' ');
  const text = utf8(bytes);
  // printf '%s' passes the text unchanged (no trailing newline); bytes a shell argument cannot
  // hold (NUL) or that are not text go through base64.
  const feed = text !== undefined && !text.includes('\0') ? `printf '%s' ${q(text)}` : `printf '%s' ${q(toBase64(bytes))} | base64 -d`;
  return `${feed} | ${parts.join(' ')} --data-binary @-`;
}
