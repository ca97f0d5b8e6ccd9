import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures, Stripe style: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>`.
 * Signing the timestamp together with the body lets a receiver refuse replays of old captures.
 * Shared by the sandbox aggregator (signs), the webhook endpoint (verifies) and the outbox publisher (signs),
 * so every side agrees byte for byte.
 */
export const SIGNATURE_HEADER = 'x-signature';
export const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

export function computeSignature(secret: string, timestamp: number, rawBody: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
}

/** The full header value for rawBody signed at nowSeconds. */
export function signWebhook(secret: string, rawBody: string | Buffer, nowSeconds: number): string {
  const timestamp = Math.floor(nowSeconds);
  return `t=${timestamp},v1=${computeSignature(secret, timestamp, rawBody)}`;
}

export type SignatureFailure = 'missing_header' | 'malformed_header' | 'timestamp_out_of_tolerance' | 'signature_mismatch';
export type SignatureVerification = { ok: true; timestamp: number } | { ok: false; reason: SignatureFailure };

export interface VerifyOptions {
  /** Largest accepted distance between the signed timestamp and now, either way. Default 300. */
  toleranceSeconds?: number;
  /** Defaults to the wall clock. */
  nowSeconds?: number;
}

/**
 * Checks a header against the exact bytes received (never a re-serialised body). Several `v1=` entries are
 * accepted, any one matching, so a secret can be rotated without dropping webhooks.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | string[] | undefined,
  rawBody: string | Buffer,
  options: VerifyOptions = {},
): SignatureVerification {
  if (Array.isArray(header)) header = header.length === 1 ? header[0] : undefined;
  if (!header) return { ok: false, reason: 'missing_header' };

  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed_header' };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (!/^\d{1,12}$/.test(value) || timestamp !== undefined) return { ok: false, reason: 'malformed_header' };
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!/^[0-9a-fA-F]{64}$/.test(value)) return { ok: false, reason: 'malformed_header' };
      candidates.push(value.toLowerCase());
    }
    // Unknown schemes (a future v2) are ignored, as Stripe's receivers do.
  }
  if (timestamp === undefined || candidates.length === 0) return { ok: false, reason: 'malformed_header' };

  const tolerance = options.toleranceSeconds ?? DEFAULT_SIGNATURE_TOLERANCE_SECONDS;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: 'timestamp_out_of_tolerance' };

  const expected = Buffer.from(computeSignature(secret, timestamp, rawBody), 'hex');
  // Compare every candidate (no early exit) so timing says nothing about which one matched.
  let matched = false;
  for (const candidate of candidates) {
    const given = Buffer.from(candidate, 'hex');
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true;
  }
  return matched ? { ok: true, timestamp } : { ok: false, reason: 'signature_mismatch' };
}
