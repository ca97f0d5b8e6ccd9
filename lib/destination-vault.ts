import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { z } from 'zod';
import type { PayoutDestination } from '../contracts/payout';
import { inTransaction, type Pool } from './db';

/**
 * Encryption at rest of payout destinations (IBANs, card tokens, e-wallet ids) in payout_destinations,
 * by envelope encryption with node:crypto's AES-256-GCM:
 * - each row has its own random 256-bit data key; the destination's JSON is encrypted with it, the payout
 *   id bound as additional authenticated data (a row copied onto another payout does not decrypt);
 * - the data key is stored wrapped (AES-256-GCM) by a key-encryption key from DESTINATION_KEYS, whose id is
 *   stored with the row, so a key ring with a new current key still opens rows sealed under older keys, and
 *   `rewrap` moves a row to the current key without touching its ciphertext.
 * Layout of both `ciphertext` and `wrapped_key`: 12-byte IV ‖ 16-byte GCM tag ‖ encrypted bytes.
 */

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Documented dev default of DESTINATION_KEYS; production refuses it (lib/config.ts). */
export const DEV_DESTINATION_KEYS = `dev:${Buffer.from('dev-only-destination-key-change!').toString('base64')}`;

/** Key-encryption keys by id, the first one current. Never printed: logs and errors see the ids only. */
export class DestinationKeyRing {
  private constructor(
    readonly currentId: string,
    private readonly keys: ReadonlyMap<string, Buffer>,
  ) {}

  /** `id:base64key,id2:base64key` (first current); throws a message that never contains key material. */
  static parse(text: string): DestinationKeyRing {
    const keys = new Map<string, Buffer>();
    let currentId: string | undefined;
    for (const [index, entry] of text.split(',').map((e) => e.trim()).entries()) {
      const [id, encoded, ...rest] = entry.split(':');
      if (!id || !KEY_ID.test(id) || encoded === undefined || rest.length > 0) throw new Error(`entry ${index + 1} is not id:base64key (id of letters, digits, . _ -)`);
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) throw new Error(`key ${id} is not base64`);
      const key = Buffer.from(encoded, 'base64');
      if (key.length !== KEY_BYTES) throw new Error(`key ${id} is ${key.length} bytes; it must be ${KEY_BYTES} (e.g. openssl rand -base64 32)`);
      if (keys.has(id)) throw new Error(`key id ${id} appears twice`);
      keys.set(id, key);
      currentId ??= id;
    }
    return new DestinationKeyRing(currentId!, keys);
  }

  get ids(): string[] {
    return [...this.keys.keys()];
  }

  /** The key of an id; undefined when this ring does not hold it. */
  key(id: string): Buffer | undefined {
    return this.keys.get(id);
  }

  /** Whether any key of this ring is one of `other`'s (used to refuse the dev key in production). */
  sharesKeyWith(other: DestinationKeyRing): boolean {
    return [...this.keys.values()].some((mine) => [...other.keys.values()].some((theirs) => timingSafeEqual(mine, theirs)));
  }

  toJSON(): unknown {
    return { currentId: this.currentId, ids: this.ids };
  }

  [inspect.custom](): string {
    return `DestinationKeyRing(current: ${this.currentId}; ids: ${this.ids.join(', ')})`;
  }
}

/** DESTINATION_KEYS as lib/config.ts parses it. */
export const destinationKeyRingSchema = z.string().transform((text, ctx) => {
  try {
    return DestinationKeyRing.parse(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** A sealed row of payout_destinations. */
export interface SealedDestination {
  key_id: string;
  wrapped_key: Buffer;
  ciphertext: Buffer;
}

/** A stored row as read back: a row written before encryption at rest has only `destination`. */
export type StoredDestination = { [K in keyof SealedDestination]: SealedDestination[K] | null } & { destination?: unknown };

/** Why a destination cannot be opened: `tampered` is final; the others are fixed by the operator. */
export class DestinationUnreadable extends Error {
  constructor(
    message: string,
    readonly reason: 'tampered' | 'unknown-key' | 'not-sealed',
  ) {
    super(message);
    this.name = 'DestinationUnreadable';
  }
}

/** AES-256-GCM under `key`, bound to `aad`: iv ‖ tag ‖ ciphertext (also seals the outbox endpoints' secrets). */
export function encrypt(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(aad, 'utf8'));
  const encrypted = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), encrypted]);
}

/** Undefined when the bytes were changed, or sealed for other additional data or with another key. */
export function decrypt(key: Buffer, sealed: Buffer, aad: string): Buffer | undefined {
  if (sealed.length < IV_BYTES + TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES }).setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}

// Additional data: the payout id (and, for the data key, the key id), versioned for a future format.
const dataAad = (payoutId: string) => `payout-destination/v1/${payoutId}`;
const keyAad = (payoutId: string, keyId: string) => `payout-destination-key/v1/${keyId}/${payoutId}`;

export type DestinationVault = ReturnType<typeof createDestinationVault>;

export function createDestinationVault(ring: DestinationKeyRing) {
  function unwrap(payoutId: string, row: SealedDestination): Buffer {
    const kek = ring.key(row.key_id);
    if (!kek) throw new DestinationUnreadable(`destination of payout ${payoutId} is sealed under key ${row.key_id}, which DESTINATION_KEYS does not hold (ids: ${ring.ids.join(', ')})`, 'unknown-key');
    const dataKey = decrypt(kek, row.wrapped_key, keyAad(payoutId, row.key_id));
    if (!dataKey) throw new DestinationUnreadable(`data key of payout ${payoutId}'s destination does not authenticate (changed, or sealed for another payout)`, 'tampered');
    return dataKey;
  }

  return {
    currentKeyId: ring.currentId,

    /** A new data key, the destination encrypted for this payout id, the data key wrapped by the current key. */
    seal(payoutId: string, destination: PayoutDestination): SealedDestination {
      const dataKey = randomBytes(KEY_BYTES);
      const ciphertext = encrypt(dataKey, Buffer.from(JSON.stringify(destination), 'utf8'), dataAad(payoutId));
      return { key_id: ring.currentId, wrapped_key: encrypt(ring.key(ring.currentId)!, dataKey, keyAad(payoutId, ring.currentId)), ciphertext };
    },

    /** The destination of a stored row, or DestinationUnreadable. */
    open(payoutId: string, row: StoredDestination): PayoutDestination {
      if (!row.ciphertext || !row.wrapped_key || !row.key_id) {
        throw new DestinationUnreadable(`destination of payout ${payoutId} is stored unencrypted; run the migrate step or \`npm run destinations:rewrap\` to seal it`, 'not-sealed');
      }
      const plaintext = decrypt(unwrap(payoutId, row as SealedDestination), row.ciphertext, dataAad(payoutId));
      if (!plaintext) throw new DestinationUnreadable(`destination of payout ${payoutId} does not authenticate (changed, or sealed for another payout)`, 'tampered');
      return JSON.parse(plaintext.toString('utf8')) as PayoutDestination;
    },

    /** The row's data key wrapped by the current key instead (the ciphertext is unchanged). */
    rewrap(payoutId: string, row: SealedDestination): Pick<SealedDestination, 'key_id' | 'wrapped_key'> {
      const dataKey = unwrap(payoutId, row);
      return { key_id: ring.currentId, wrapped_key: encrypt(ring.key(ring.currentId)!, dataKey, keyAad(payoutId, ring.currentId)) };
    },
  };
}

const BATCH = 500;

/**
 * Seals rows stored in plain text before encryption at rest (SQL cannot: the key is in the environment)
 * and clears their plaintext. Run by the migrate step and by `npm run destinations:rewrap`.
 */
export async function sealPlaintextDestinations(pool: Pool, vault: DestinationVault): Promise<number> {
  let sealed = 0;
  for (;;) {
    const done = await inTransaction(pool, async (client) => {
      const { rows } = await client.query<{ payout_id: string; destination: PayoutDestination }>(
        'SELECT payout_id, destination FROM payout_destinations WHERE ciphertext IS NULL ORDER BY payout_id LIMIT $1 FOR UPDATE SKIP LOCKED',
        [BATCH],
      );
      for (const row of rows) {
        const s = vault.seal(row.payout_id, row.destination);
        await client.query('UPDATE payout_destinations SET key_id = $2, wrapped_key = $3, ciphertext = $4, destination = NULL WHERE payout_id = $1', [row.payout_id, s.key_id, s.wrapped_key, s.ciphertext]);
      }
      return rows.length;
    });
    sealed += done;
    if (done < BATCH) return sealed;
  }
}

export interface RewrapReport {
  /** Rows whose data key now is wrapped by the current key. */
  rewrapped: number;
  /** Rows sealed from plain text. */
  sealed: number;
  /** Rows under keys the ring does not hold, by key id: they cannot be opened (a removed key?). */
  unknownKeys: Record<string, number>;
  /** Payout ids whose data key does not authenticate (tampered): left as they are. */
  unreadable: string[];
}

/** Moves every row under an older key of the ring to its current key (ciphertext untouched), and seals plaintext rows. */
export async function rewrapDestinations(pool: Pool, vault: DestinationVault, ring: DestinationKeyRing): Promise<RewrapReport> {
  const sealed = await sealPlaintextDestinations(pool, vault);
  const older = ring.ids.filter((id) => id !== ring.currentId);
  const report: RewrapReport = { rewrapped: 0, sealed, unknownKeys: {}, unreadable: [] };
  let after = '';
  for (;;) {
    const rows = await inTransaction(pool, async (client) => {
      const { rows: batch } = await client.query<SealedDestination & { payout_id: string }>(
        'SELECT payout_id, key_id, wrapped_key FROM payout_destinations WHERE key_id = ANY($1) AND payout_id > $2 ORDER BY payout_id LIMIT $3 FOR UPDATE SKIP LOCKED',
        [older, after, BATCH],
      );
      for (const row of batch) {
        try {
          const moved = vault.rewrap(row.payout_id, row);
          await client.query('UPDATE payout_destinations SET key_id = $2, wrapped_key = $3 WHERE payout_id = $1', [row.payout_id, moved.key_id, moved.wrapped_key]);
          report.rewrapped += 1;
        } catch (err) {
          if (!(err instanceof DestinationUnreadable)) throw err;
          report.unreadable.push(row.payout_id);
        }
      }
      return batch;
    });
    if (rows.length > 0) after = rows[rows.length - 1]!.payout_id;
    if (rows.length < BATCH) break;
  }
  const { rows } = await pool.query<{ key_id: string; n: number }>('SELECT key_id, count(*)::int AS n FROM payout_destinations WHERE key_id <> ALL($1) GROUP BY key_id', [ring.ids]);
  for (const row of rows) report.unknownKeys[row.key_id] = row.n;
  return report;
}
