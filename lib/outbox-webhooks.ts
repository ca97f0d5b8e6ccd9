import { createHash, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';

/**
 * The outbox's webhooks as the Standard Webhooks specification (standardwebhooks.com) has them: headers
 * `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix seconds of this attempt)
 * and `webhook-signature` (`v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>`, one entry per
 * secret, space-separated, so a receiver keeps verifying across a rotation). Secrets are `whsec_<base64>`.
 * Signing goes through the `standardwebhooks` library itself, the one receivers verify with.
 *
 * Also what the OUTBOX_ENDPOINTS setting and the staff API accept: endpoint ids, event type filters, secrets.
 * Provider webhooks (lib/webhook-signature.ts) keep their own scheme.
 */

export const SECRET_PREFIX = 'whsec_';
/** Key bytes of a generated secret (the specification asks for 24 to 64). */
const GENERATED_SECRET_BYTES = 32;

/** An endpoint's id: what staff routes, logs and dead letters name it by. */
export const ENDPOINT_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const endpointIdSchema = z.string().regex(ENDPOINT_ID, 'an endpoint id is 1-64 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit');

/** `payout.settled`, `payout.*` (every payout event) or `*`. */
const EVENT_TYPE_PATTERN = /^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$/;
export const eventTypePatternSchema = z.string().regex(EVENT_TYPE_PATTERN, 'an event type filter is a type (deposit.credited), a family (payout.*) or *');

/** Whether an event type passes an endpoint's filter (empty: every type). The fan-out's SQL does the same. */
export function matchesEventTypes(patterns: readonly string[], eventType: string): boolean {
  if (patterns.length === 0) return true;
  return patterns.some((p) => p === '*' || p === eventType || (p.endsWith('.*') && eventType.startsWith(p.slice(0, -1))));
}

/**
 * A signing secret as configured: `whsec_<base64 key>` (the specification's form, 16 to 64 key bytes), or, for
 * OUTBOX_WEBHOOK_SECRET set before the outbox followed the specification, any other text of 16+ characters,
 * whose UTF-8 bytes are the key (receivers verify with `whsec_` + base64 of it). Errors never contain the value.
 */
export function parseSigningSecret(text: string, opts: { legacy?: boolean } = {}): { key: Buffer; secret: string } {
  if (text.startsWith(SECRET_PREFIX)) {
    const encoded = text.slice(SECRET_PREFIX.length);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 !== 0) throw new Error(`a ${SECRET_PREFIX} secret is followed by standard base64`);
    const key = Buffer.from(encoded, 'base64');
    if (key.length < 16 || key.length > 64) throw new Error(`the key of a ${SECRET_PREFIX} secret is 16 to 64 bytes (this one is ${key.length}); generate one with: echo ${SECRET_PREFIX}$(openssl rand -base64 32)`);
    return { key, secret: text };
  }
  if (!opts.legacy) throw new Error(`a secret is ${SECRET_PREFIX}<base64 key> (echo ${SECRET_PREFIX}$(openssl rand -base64 32))`);
  if (text.length < 16) throw new Error(`at least 16 characters, or ${SECRET_PREFIX}<base64 key>`);
  const key = Buffer.from(text, 'utf8');
  return { key, secret: `${SECRET_PREFIX}${key.toString('base64')}` };
}

/** A new random secret in whsec_ form. */
export function generateSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(GENERATED_SECRET_BYTES).toString('base64')}`;
}

/** Names a secret without revealing it (listings, audit): 16 hex characters of a domain-separated SHA-256 of the key. */
export function secretFingerprint(secret: string): string {
  const { key } = parseSigningSecret(secret);
  return createHash('sha256').update('outbox-webhook-secret/v1\0').update(key).digest('hex').slice(0, 16);
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** The three headers for one attempt: one `v1,` signature per secret (current first). */
export function signOutboxWebhook(secrets: readonly string[], eventId: string, body: string, at: Date = new Date()): SignedHeaders {
  if (secrets.length === 0) throw new Error('no secret to sign with');
  const timestamp = Math.floor(at.getTime() / 1000);
  const when = new Date(timestamp * 1000);
  return {
    'webhook-id': eventId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': secrets.map((s) => new Webhook(s).sign(eventId, when, body)).join(' '),
  };
}

const DURATION = /^(\d+)\s*(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `259200000`, `500ms`, `90s`, `15m`, `1h`, `3d` → milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[(m[2] ?? 'ms') as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined;
}

export const durationSchema = z.string().transform((text, ctx) => {
  const ms = parseDurationMs(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: 'a duration: milliseconds, or a number with ms, s, m, h or d (e.g. 3d)' });
    return z.NEVER;
  }
  return ms;
});

const httpUrl = z.url({ protocol: /^https?$/, error: 'an http(s) URL' });

/** One endpoint as OUTBOX_ENDPOINTS gives it (JSON form). */
export const configuredEndpointSchema = z.strictObject({
  id: endpointIdSchema,
  url: httpUrl,
  /** Unset: OUTBOX_WEBHOOK_SECRET. */
  secret: z
    .string()
    .superRefine((s, ctx) => {
      try {
        parseSigningSecret(s);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    })
    .optional(),
  event_types: z.array(eventTypePatternSchema).max(50).default([]),
  enabled: z.boolean().default(true),
  /** Where a new endpoint starts: every event kept in the outbox, or events written from now on. */
  from: z.enum(['beginning', 'now']).default('beginning'),
  /** When the secret changes: how long the former one still signs too (default: 24 hours after the change). */
  keep_previous_until: z.iso.datetime({ offset: true }).optional(),
});

export type ConfiguredEndpoint = z.output<typeof configuredEndpointSchema>;

/** The id a bare URL of OUTBOX_ENDPOINTS gets (migration 0021 gave endpoints served before it the same). */
export function urlEndpointId(url: string): string {
  return `url-${createHash('sha256').update(url, 'utf8').digest('hex').slice(0, 12)}`;
}

/**
 * OUTBOX_ENDPOINTS: a JSON array of endpoints (configuredEndpointSchema), or, as before, comma-separated URLs
 * (each signed with OUTBOX_WEBHOOK_SECRET, every event type, id `url-<hash of the URL>`). Messages name the
 * entry and field, never a secret.
 */
export function parseConfiguredEndpoints(text: string): { endpoints: ConfiguredEndpoint[] } | { problems: string[] } {
  const trimmed = text.trim();
  if (trimmed === '') return { endpoints: [] };
  let entries: unknown;
  if (trimmed.startsWith('[')) {
    try {
      entries = JSON.parse(trimmed);
    } catch (err) {
      // Not the parser's message: it quotes the text, which may hold a secret.
      const at = /position (\d+)/.exec((err as Error).message)?.[1];
      return { problems: [`not valid JSON${at ? ` (at character ${at})` : ''}`] };
    }
  } else {
    const urls = trimmed.split(',').map((u) => u.trim()).filter((u) => u !== '');
    const bad = urls.findIndex((u) => !httpUrl.safeParse(u).success);
    if (bad >= 0) return { problems: [`entry ${bad + 1} is not an http(s) URL (give comma-separated URLs, or a JSON array of endpoints)`] };
    entries = urls.map((url) => ({ id: urlEndpointId(url), url }));
  }
  const parsed = z.array(configuredEndpointSchema).safeParse(entries);
  if (!parsed.success) {
    const where = (path: PropertyKey[]) => (path.length === 0 ? '' : `entry ${Number(path[0]) + 1}${path.length > 1 ? ` ${path.slice(1).map(String).join('.')}` : ''}: `);
    return { problems: parsed.error.issues.map((i) => `${where(i.path)}${i.message}`) };
  }
  const seen = new Set<string>();
  for (const e of parsed.data) {
    if (seen.has(e.id)) return { problems: [`endpoint id ${e.id} appears twice`] };
    seen.add(e.id);
  }
  return { endpoints: parsed.data };
}

export const configuredEndpointsSchema = z.string().transform((text, ctx) => {
  const parsed = parseConfiguredEndpoints(text);
  if ('endpoints' in parsed) return parsed.endpoints;
  for (const message of parsed.problems) ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
});

/** Logs and listings of URLs that may carry credentials: the origin only. */
export function urlOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '[invalid url]';
  }
}
