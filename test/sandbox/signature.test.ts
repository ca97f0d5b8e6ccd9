import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { computeSignature, signWebhook, verifyWebhookSignature } from '../../lib/webhook-signature';

const secret = 'whsec-test-0123456789abcdef';
const body = JSON.stringify({ id: 'evt_1', type: 'payout.settled', data: { object: { id: 'po_1' } } });
const t = 1_760_000_000;

describe('webhook signatures', () => {
  it('signs t + "." + raw body with HMAC-SHA256 in the documented header format', () => {
    const header = signWebhook(secret, body, t);
    const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
    expect(header).toBe(`t=${t},v1=${expected}`);
    expect(computeSignature(secret, t, Buffer.from(body))).toBe(expected);
  });

  it('verifies a fresh signature, from a string or the raw bytes', () => {
    const header = signWebhook(secret, body, t);
    expect(verifyWebhookSignature(secret, header, body, { nowSeconds: t + 10 })).toEqual({ ok: true, timestamp: t });
    expect(verifyWebhookSignature(secret, header, Buffer.from(body), { nowSeconds: t }).ok).toBe(true);
  });

  it('refuses a tampered body, a wrong secret and a tampered signature', () => {
    const header = signWebhook(secret, body, t);
    const opts = { nowSeconds: t };
    expect(verifyWebhookSignature(secret, header, body.replace('po_1', 'po_2'), opts)).toEqual({ ok: false, reason: 'signature_mismatch' });
    expect(verifyWebhookSignature('another-secret-0123456789', header, body, opts)).toEqual({ ok: false, reason: 'signature_mismatch' });
    const flipped = header.slice(0, -1) + (header.endsWith('0') ? '1' : '0');
    expect(verifyWebhookSignature(secret, flipped, body, opts)).toEqual({ ok: false, reason: 'signature_mismatch' });
    // The timestamp is signed too: moving it breaks the signature.
    expect(verifyWebhookSignature(secret, header.replace(`t=${t}`, `t=${t + 1}`), body, opts)).toEqual({ ok: false, reason: 'signature_mismatch' });
  });

  it('refuses stale and future timestamps outside the tolerance', () => {
    const header = signWebhook(secret, body, t);
    expect(verifyWebhookSignature(secret, header, body, { nowSeconds: t + 301 })).toEqual({ ok: false, reason: 'timestamp_out_of_tolerance' });
    expect(verifyWebhookSignature(secret, header, body, { nowSeconds: t - 301 })).toEqual({ ok: false, reason: 'timestamp_out_of_tolerance' });
    expect(verifyWebhookSignature(secret, header, body, { nowSeconds: t + 60, toleranceSeconds: 30 })).toEqual({ ok: false, reason: 'timestamp_out_of_tolerance' });
    expect(verifyWebhookSignature(secret, header, body, { nowSeconds: t + 300 }).ok).toBe(true);
  });

  it('refuses missing and malformed headers', () => {
    const v1 = computeSignature(secret, t, body);
    for (const header of ['', 'garbage', `t=${t}`, `v1=${v1}`, `t=abc,v1=${v1}`, `t=${t},v1=xyz`, `t=${t},t=${t},v1=${v1}`]) {
      const result = verifyWebhookSignature(secret, header, body, { nowSeconds: t });
      expect(result.ok, header).toBe(false);
    }
    expect(verifyWebhookSignature(secret, undefined, body)).toEqual({ ok: false, reason: 'missing_header' });
  });

  it('accepts any one matching v1 (secret rotation)', () => {
    const old = computeSignature('old-secret-0123456789abcdef', t, body);
    const current = computeSignature(secret, t, body);
    expect(verifyWebhookSignature(secret, `t=${t},v1=${old},v1=${current}`, body, { nowSeconds: t }).ok).toBe(true);
    expect(verifyWebhookSignature(secret, `t=${t},v1=${old}`, body, { nowSeconds: t }).ok).toBe(false);
  });
});
