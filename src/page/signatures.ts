/**
 * Webhook signatures checked in the browser with WebCrypto, over the raw body bytes. The secret
 * is typed by the user, kept in this browser's localStorage and never sent anywhere.
 */
import type { CapturedRequest } from '../protocol.js';
import { bodyBytes, concat, fromBase64, toBase64, toHex } from './bytes.js';

export type Verdict = 'valid' | 'invalid' | 'skew' | 'unsigned';

export interface Check {
  scheme: string;
  verdict: Verdict;
  detail: string;
}

const enc = new TextEncoder();

async function hmac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey('raw', key as BufferSource, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, data as BufferSource));
}

/** Compares without an early exit (the secret is the user's own, but habits matter). */
function same(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Seconds between the signed timestamp and the capture, allowed as Stripe, Slack and Svix do. */
export const toleranceSeconds = 300;

function skew(req: CapturedRequest, signedAt: number): number {
  return Math.abs(Date.parse(req.timestamp) / 1000 - signedAt);
}

export const schemes = ['stripe', 'github', 'standard', 'shopify', 'slack', 'generic'] as const;
export type Scheme = (typeof schemes)[number];

export const schemeNames: Record<Scheme, string> = {
  stripe: 'Stripe (stripe-signature)',
  github: 'GitHub (x-hub-signature-256)',
  standard: 'Standard Webhooks / Svix',
  shopify: 'Shopify (x-shopify-hmac-sha256)',
  slack: 'Slack (x-slack-signature)',
  generic: 'HMAC-SHA256 header',
};

/** The scheme a request's headers name, if any. */
export function detectScheme(req: CapturedRequest): Scheme | undefined {
  const has = (n: string) => req.headers[n] !== undefined;
  if (has('stripe-signature')) return 'stripe';
  if (has('x-hub-signature-256')) return 'github';
  if (has('webhook-signature') || has('svix-signature')) return 'standard';
  if (has('x-shopify-hmac-sha256')) return 'shopify';
  if (has('x-slack-signature')) return 'slack';
  return undefined;
}

export async function verify(req: CapturedRequest, scheme: Scheme, secret: string, genericHeader = 'x-signature'): Promise<Check> {
  const body = bodyBytes(req);
  const key = enc.encode(secret);
  const hd = (n: string) => req.headers[n];
  const result = (verdict: Verdict, detail: string): Check => ({ scheme: schemeNames[scheme], verdict, detail });
  switch (scheme) {
    case 'stripe': {
      const header = hd('stripe-signature');
      if (!header) return result('unsigned', 'no stripe-signature header');
      const fields = header.split(',').map((f) => f.trim().split('='));
      const t = fields.find(([k]) => k === 't')?.[1];
      const v1 = fields.filter(([k]) => k === 'v1').map(([, v]) => v ?? '');
      if (!t || v1.length === 0) return result('invalid', 'stripe-signature has no t= or v1=');
      const expected = toHex(await hmac(key, concat(enc.encode(`${t}.`), body)));
      if (!v1.some((s) => same(s, expected))) return result('invalid', 'no v1 signature matches');
      const off = skew(req, Number(t));
      return off > toleranceSeconds ? result('skew', `signature matches, but t is ${Math.round(off)} s from the capture (tolerance ${toleranceSeconds} s)`) : result('valid', `v1 matches; t within ${Math.round(off)} s of the capture`);
    }
    case 'github': {
      const header = hd('x-hub-signature-256');
      if (!header) return result('unsigned', 'no x-hub-signature-256 header');
      const expected = `sha256=${toHex(await hmac(key, body))}`;
      return same(header.trim(), expected) ? result('valid', 'sha256 HMAC of the body matches') : result('invalid', 'sha256 HMAC of the body differs');
    }
    case 'standard': {
      const p = hd('webhook-signature') !== undefined ? 'webhook' : 'svix';
      const id = hd(`${p}-id`);
      const ts = hd(`${p}-timestamp`);
      const sigs = hd(`${p}-signature`);
      if (!sigs) return result('unsigned', 'no webhook-signature header');
      if (!id || !ts) return result('invalid', `${p}-id or ${p}-timestamp missing`);
      // The secret is "whsec_" + base64 of the key bytes.
      let raw: Uint8Array;
      try {
        raw = secret.startsWith('whsec_') ? fromBase64(secret.slice(6)) : fromBase64(secret);
      } catch {
        return result('invalid', 'the secret is not whsec_<base64>');
      }
      const expected = toBase64(await hmac(raw, concat(enc.encode(`${id}.${ts}.`), body)));
      const ok = sigs.split(' ').some((s) => s.startsWith('v1,') && same(s.slice(3), expected));
      if (!ok) return result('invalid', 'no v1 signature matches');
      const off = skew(req, Number(ts));
      return off > toleranceSeconds ? result('skew', `signature matches, timestamp ${Math.round(off)} s from the capture`) : result('valid', 'v1 matches');
    }
    case 'shopify': {
      const header = hd('x-shopify-hmac-sha256');
      if (!header) return result('unsigned', 'no x-shopify-hmac-sha256 header');
      return same(header.trim(), toBase64(await hmac(key, body))) ? result('valid', 'base64 HMAC of the body matches') : result('invalid', 'base64 HMAC of the body differs');
    }
    case 'slack': {
      const header = hd('x-slack-signature');
      const ts = hd('x-slack-request-timestamp');
      if (!header) return result('unsigned', 'no x-slack-signature header');
      if (!ts) return result('invalid', 'no x-slack-request-timestamp');
      const expected = `v0=${toHex(await hmac(key, concat(enc.encode(`v0:${ts}:`), body)))}`;
      if (!same(header.trim(), expected)) return result('invalid', 'v0 signature differs');
      const off = skew(req, Number(ts));
      return off > toleranceSeconds ? result('skew', `signature matches, timestamp ${Math.round(off)} s from the capture`) : result('valid', 'v0 matches');
    }
    case 'generic': {
      const name = genericHeader.trim().toLowerCase();
      const header = hd(name);
      if (!header) return result('unsigned', `no ${name} header`);
      const mac = await hmac(key, body);
      const value = header.trim().replace(/^sha256=/i, '');
      const ok = same(value.toLowerCase(), toHex(mac)) || same(value, toBase64(mac));
      return ok ? result('valid', `${name} is the HMAC-SHA256 of the body (hex or base64)`) : result('invalid', `${name} differs from the HMAC-SHA256 of the body`);
    }
  }
}
