import { createHash } from 'node:crypto';
import { inTransaction, type Pool, type PoolClient } from '../../lib/db';
import { decrypt, encrypt, type DestinationKeyRing } from '../../lib/destination-vault';
import { generateSigningSecret, secretFingerprint, type ConfiguredEndpoint } from '../../lib/outbox-webhooks';

/**
 * Outbox endpoints as data (table outbox_endpoints, migrations/0005 and 0021): what the publisher serves,
 * what OUTBOX_ENDPOINTS applies at start, what staff change through /v1/ops/outbox/endpoints.
 *
 * Secrets are kept sealed: AES-256-GCM directly under a key-encryption key of DESTINATION_KEYS (the ring that
 * seals payout destinations; its id is stored alongside), the endpoint's key bound as additional data, so a
 * sealed secret copied onto another endpoint does not open (lib/destination-vault.ts encrypt/decrypt: IV ‖ tag ‖ bytes).
 * A publisher re-seals secrets under an older key with the ring's current one at start (resealSecrets).
 */

/** How long the former secret keeps signing after a rotation when nobody says otherwise. */
export const DEFAULT_PREVIOUS_SECRET_OVERLAP_MS = 24 * 3_600_000;

const aad = (endpointKey: string) => `outbox-endpoint-secret/v1/${endpointKey}`;

export class EndpointSecretUnreadable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EndpointSecretUnreadable';
  }
}

export interface SealedSecret {
  keyId: string;
  sealed: Buffer;
  fingerprint: string;
}

export function sealSecret(ring: DestinationKeyRing, endpointKey: string, secret: string): SealedSecret {
  return { keyId: ring.currentId, sealed: encrypt(ring.key(ring.currentId)!, Buffer.from(secret, 'utf8'), aad(endpointKey)), fingerprint: secretFingerprint(secret) };
}

export function openSecret(ring: DestinationKeyRing, endpointKey: string, keyId: string, sealed: Buffer): string {
  const kek = ring.key(keyId);
  if (!kek) throw new EndpointSecretUnreadable(`its secret is sealed under key ${keyId}, which DESTINATION_KEYS does not hold (ids: ${ring.ids.join(', ')})`);
  const secret = decrypt(kek, sealed, aad(endpointKey));
  if (!secret) throw new EndpointSecretUnreadable('its secret does not authenticate (changed, or sealed for another endpoint)');
  return secret.toString('utf8');
}

export interface EndpointRow {
  /** Key of deliveries and dead letters (the id; the URL for an endpoint served before migration 0021). */
  endpoint: string;
  name: string;
  url: string;
  enabled: boolean;
  event_types: string[];
  source: 'config' | 'api';
  config_digest: string | null;
  secret_key_id: string | null;
  secret_sealed: Buffer | null;
  secret_fingerprint: string | null;
  previous_key_id: string | null;
  previous_sealed: Buffer | null;
  previous_fingerprint: string | null;
  previous_until: Date | null;
  /** previous_until is still ahead (by the database's clock, which every publisher shares). */
  previous_live: boolean;
  secret_rotated_at: Date | null;
  changed_by: string | null;
  change_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

const ROW = `endpoint, name, url, enabled, event_types, source, config_digest, secret_key_id, secret_sealed, secret_fingerprint,
  previous_key_id, previous_sealed, previous_fingerprint, previous_until, coalesce(previous_until > now(), false) AS previous_live,
  secret_rotated_at, changed_by, change_reason, created_at, updated_at`;

/** An enabled endpoint as a publisher round serves it. */
export interface ServedEndpoint {
  key: string;
  id: string;
  url: string;
  eventTypes: string[];
  /** What signs each attempt: the current secret, then the previous one while it is kept. */
  secrets: string[];
}

/** The enabled endpoints (scoped to `ids` when given), secrets opened; the ones whose secret cannot be opened apart. */
export async function servedEndpoints(pool: Pool, ring: DestinationKeyRing, ids?: readonly string[]): Promise<{ served: ServedEndpoint[]; unreadable: { id: string; reason: string }[] }> {
  const { rows } = await pool.query<EndpointRow>(`SELECT ${ROW} FROM outbox_endpoints WHERE enabled AND ($1::text[] IS NULL OR name = ANY($1)) ORDER BY name`, [ids ?? null]);
  const served: ServedEndpoint[] = [];
  const unreadable: { id: string; reason: string }[] = [];
  for (const row of rows) {
    try {
      const secrets = [openSecret(ring, row.endpoint, row.secret_key_id!, row.secret_sealed!)];
      if (row.previous_live) secrets.push(openSecret(ring, row.endpoint, row.previous_key_id!, row.previous_sealed!));
      served.push({ key: row.endpoint, id: row.name, url: row.url, eventTypes: row.event_types, secrets });
    } catch (err) {
      if (!(err instanceof EndpointSecretUnreadable)) throw err;
      unreadable.push({ id: row.name, reason: err.message });
    }
  }
  return { served, unreadable };
}

export async function endpointRows(db: Pool | PoolClient, filter: { id?: string } = {}): Promise<EndpointRow[]> {
  const { rows } = await db.query<EndpointRow>(`SELECT ${ROW} FROM outbox_endpoints WHERE $1::text IS NULL OR name = $1 ORDER BY name`, [filter.id ?? null]);
  return rows;
}

async function lockedRow(db: PoolClient, id: string): Promise<EndpointRow | undefined> {
  const { rows } = await db.query<EndpointRow>(`SELECT ${ROW} FROM outbox_endpoints WHERE name = $1 FOR UPDATE`, [id]);
  return rows[0];
}

/** Inserts a new endpoint; false when one with this id (or key) exists already. */
async function insertEndpoint(
  db: PoolClient,
  ring: DestinationKeyRing,
  e: { id: string; url: string; enabled: boolean; eventTypes: string[]; from: 'beginning' | 'now'; source: 'config' | 'api'; digest: string | null; secret: string; actor: string; reason: string },
): Promise<boolean> {
  const s = sealSecret(ring, e.id, e.secret);
  const inserted = await db.query(
    `INSERT INTO outbox_endpoints (endpoint, name, url, enabled, event_types, source, config_digest, secret_key_id, secret_sealed, secret_fingerprint,
                                   secret_rotated_at, changed_by, change_reason, scanned_before)
     VALUES ($1, $1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10, $11, CASE WHEN $12 THEN pg_snapshot_xmin(pg_current_snapshot()) ELSE '0'::xid8 END)
     ON CONFLICT DO NOTHING`,
    [e.id, e.url, e.enabled, e.eventTypes, e.source, e.digest, s.keyId, s.sealed, s.fingerprint, e.actor, e.reason, e.from === 'now'],
  );
  return inserted.rowCount === 1;
}

/** The current secret becomes the previous one (kept until `keepPreviousUntil`), `secret` the current one. */
async function setSecret(db: PoolClient, ring: DestinationKeyRing, row: EndpointRow, secret: string, keepPreviousUntil: Date): Promise<void> {
  const s = sealSecret(ring, row.endpoint, secret);
  const keep = row.secret_sealed !== null;
  await db.query(
    `UPDATE outbox_endpoints
        SET previous_key_id = $2, previous_sealed = $3, previous_fingerprint = $4, previous_until = $5,
            secret_key_id = $6, secret_sealed = $7, secret_fingerprint = $8, secret_rotated_at = now(), updated_at = now()
      WHERE endpoint = $1`,
    [row.endpoint, keep ? row.secret_key_id : null, keep ? row.secret_sealed : null, keep ? row.secret_fingerprint : null, keep ? keepPreviousUntil : null, s.keyId, s.sealed, s.fingerprint],
  );
}

/** Identifies an OUTBOX_ENDPOINTS entry as applied (with its secret's fingerprint, never the secret). */
function configDigest(e: ConfiguredEndpoint, secret: string): string {
  const canonical = JSON.stringify([e.url, [...e.event_types].sort(), e.enabled, secretFingerprint(secret), e.keep_previous_until ?? null]);
  return createHash('sha256').update(canonical).digest('hex');
}

export type AppliedEntry = { id: string; outcome: 'created' | 'updated' | 'unchanged' };

/**
 * Applies OUTBOX_ENDPOINTS at a publisher's start. An entry unchanged since it was last applied leaves the
 * endpoint as staff may have changed it since; a new or changed entry wins (URL, filter, enabled, and a new
 * secret rotates: the former one keeps signing until keep_previous_until, default 24 hours). Endpoints the
 * setting no longer names are left alone (staff disable them). Several publishers starting at once agree:
 * each entry is applied under its row lock.
 */
export async function applyConfiguredEndpoints(pool: Pool, ring: DestinationKeyRing, entries: readonly ConfiguredEndpoint[], defaultSecret: string): Promise<AppliedEntry[]> {
  const applied: AppliedEntry[] = [];
  for (const e of entries) {
    const secret = e.secret ?? defaultSecret;
    const digest = configDigest(e, secret);
    const outcome = await inTransaction(pool, async (db): Promise<AppliedEntry['outcome']> => {
      for (let tries = 0; ; tries++) {
        if (tries > 2) throw new Error(`outbox endpoint ${e.id}: neither inserted nor found`);
        const row = await lockedRow(db, e.id);
        if (!row) {
          const fields = { id: e.id, url: e.url, enabled: e.enabled, eventTypes: e.event_types, from: e.from, source: 'config' as const, digest, secret };
          if (await insertEndpoint(db, ring, { ...fields, actor: 'config:OUTBOX_ENDPOINTS', reason: 'OUTBOX_ENDPOINTS' })) return 'created';
          continue; // another publisher inserted it meanwhile: apply over its row
        }
        if (row.config_digest === digest) return 'unchanged';
        if (row.secret_fingerprint !== secretFingerprint(secret)) {
          await setSecret(db, ring, row, secret, e.keep_previous_until ? new Date(e.keep_previous_until) : new Date(Date.now() + DEFAULT_PREVIOUS_SECRET_OVERLAP_MS));
        }
        await db.query(
          `UPDATE outbox_endpoints SET url = $2, enabled = $3, event_types = $4, source = 'config', config_digest = $5,
                  changed_by = 'config:OUTBOX_ENDPOINTS', change_reason = 'OUTBOX_ENDPOINTS changed', updated_at = now()
            WHERE endpoint = $1`,
          [row.endpoint, e.url, e.enabled, e.event_types, digest],
        );
        return 'updated';
      }
    });
    applied.push({ id: e.id, outcome });
  }
  return applied;
}

export interface EndpointChange {
  url: string;
  eventTypes: string[];
  enabled: boolean;
  /** Only for a new endpoint. */
  from: 'beginning' | 'now';
}

/** Creates (with a generated secret, returned this once) or changes an endpoint; within the caller's transaction. */
export async function putEndpoint(db: PoolClient, ring: DestinationKeyRing, id: string, change: EndpointChange, actor: string, reason: string): Promise<{ created: boolean; secret?: string }> {
  for (let tries = 0; ; tries++) {
    if (tries > 2) throw new Error(`outbox endpoint ${id}: neither inserted nor found`);
    const row = await lockedRow(db, id);
    if (!row) {
      const secret = generateSigningSecret();
      if (await insertEndpoint(db, ring, { id, url: change.url, enabled: change.enabled, eventTypes: change.eventTypes, from: change.from, source: 'api', digest: null, secret, actor, reason })) {
        return { created: true, secret };
      }
      continue;
    }
    await db.query('UPDATE outbox_endpoints SET url = $2, enabled = $3, event_types = $4, changed_by = $5, change_reason = $6, updated_at = now() WHERE endpoint = $1', [
      row.endpoint,
      change.url,
      change.enabled && row.secret_sealed !== null, // an endpoint without a secret (served before 0021, not configured again) cannot sign
      change.eventTypes,
      actor,
      reason,
    ]);
    return { created: false };
  }
}

/** A new generated secret (returned this once); the current one keeps signing until keepPreviousUntil. Undefined: no such endpoint. */
export async function rotateSecret(db: PoolClient, ring: DestinationKeyRing, id: string, keepPreviousUntil: Date, actor: string, reason: string): Promise<string | undefined> {
  const row = await lockedRow(db, id);
  if (!row) return undefined;
  const secret = generateSigningSecret();
  await setSecret(db, ring, row, secret, keepPreviousUntil);
  await db.query('UPDATE outbox_endpoints SET changed_by = $2, change_reason = $3 WHERE endpoint = $1', [row.endpoint, actor, reason]);
  return secret;
}

/** Re-seals secrets under an older key of the ring with its current key; returns how many, and the ids it cannot open. */
export async function resealSecrets(pool: Pool, ring: DestinationKeyRing): Promise<{ resealed: number; unreadable: string[] }> {
  const report = { resealed: 0, unreadable: [] as string[] };
  const { rows } = await pool.query<{ name: string }>(
    'SELECT name FROM outbox_endpoints WHERE secret_key_id <> $1 OR previous_key_id <> $1',
    [ring.currentId],
  );
  for (const { name } of rows) {
    await inTransaction(pool, async (db) => {
      const row = await lockedRow(db, name);
      if (!row) return;
      try {
        const reseal = (keyId: string | null, sealed: Buffer | null) => (keyId === null || sealed === null ? null : keyId === ring.currentId ? { keyId, sealed } : sealSecret(ring, row.endpoint, openSecret(ring, row.endpoint, keyId, sealed)));
        const current = reseal(row.secret_key_id, row.secret_sealed);
        const previous = reseal(row.previous_key_id, row.previous_sealed);
        await db.query('UPDATE outbox_endpoints SET secret_key_id = $2, secret_sealed = $3, previous_key_id = $4, previous_sealed = $5 WHERE endpoint = $1', [
          row.endpoint,
          current?.keyId ?? null,
          current?.sealed ?? null,
          previous?.keyId ?? null,
          previous?.sealed ?? null,
        ]);
        report.resealed++;
      } catch (err) {
        if (!(err instanceof EndpointSecretUnreadable)) throw err;
        report.unreadable.push(name);
      }
    });
  }
  return report;
}
