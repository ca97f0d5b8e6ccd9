import { createHash } from 'node:crypto';
import type { Pool } from '../../../lib/db';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEM_CONTENT_TYPE, ProblemError } from '../common/problem';

/** 1-255 printable ASCII characters (after the IETF Idempotency-Key draft and Stripe). */
const KEY_PATTERN = /^[\x20-\x7e]{1,255}$/;

/**
 * The request's one Idempotency-Key. Node joins repeated headers into "k1, k2", which is itself a valid key:
 * a request carrying two keys is refused (it cannot say which one its retries repeat), detected in the raw headers.
 */
export function readIdempotencyKey(request: FastifyRequest): string {
  const rawHeaders = request.raw.rawHeaders;
  let sent = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'idempotency-key') sent += 1;
  if (sent > 1) throw new ProblemError('IDEMPOTENCY_KEY_DUPLICATED', `Send exactly one Idempotency-Key header (got ${sent})`);
  const header = request.headers['idempotency-key'];
  if (header === undefined || header === '') throw new ProblemError('IDEMPOTENCY_KEY_MISSING', 'Send an Idempotency-Key header; retries must repeat it');
  if (Array.isArray(header) || !KEY_PATTERN.test(header)) throw new ProblemError('IDEMPOTENCY_KEY_INVALID');
  return header;
}

/** JSON with object keys sorted, so two equal requests have one fingerprint whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export function requestFingerprint(operation: string, request: unknown): string {
  return createHash('sha256').update(`${operation}\n${canonicalJson(request)}`).digest('hex');
}

/** A resource id derived from the account-scoped key: stable for the key, unguessable without it. */
export function resourceIdFor(prefix: 'po' | 'dp', accountId: string, key: string): string {
  return `${prefix}_${createHash('sha256').update(`${accountId}\n${key}`).digest('hex').slice(0, 32)}`;
}

/** An HTTP answer as sent: status and the exact JSON text of the body. */
export interface StoredAnswer {
  status: number;
  body: string;
}

export type IdempotencyLookup =
  | { state: 'absent' }
  | { state: 'mismatch' }
  | { state: 'in_progress'; resourceId: string; claimedAt: Date }
  | { state: 'completed'; resourceId: string; answer: StoredAnswer };

interface RecordRow {
  created_at: Date;
  operation: string;
  fingerprint: string;
  resource_id: string;
  response_status: number | null;
  response_body: string | null;
}

/**
 * The first answer to each (account, key), kept forever in PostgreSQL. A request claims its key before
 * it starts anything; the first answer stored wins, and every duplicate (sequential or concurrent) gets it.
 */
export class IdempotencyStore {
  constructor(private readonly pool: Pool) {}

  async lookup(accountId: string, key: string, operation: string, fingerprint: string): Promise<IdempotencyLookup> {
    const { rows } = await this.pool.query<RecordRow>(
      'SELECT created_at, operation, fingerprint, resource_id, response_status, response_body FROM idempotency_records WHERE account_id = $1 AND idempotency_key = $2',
      [accountId, key],
    );
    return toLookup(rows[0], operation, fingerprint);
  }

  /**
   * Claims the key for this request; if someone else holds it, says how it stands.
   * ON CONFLICT names no target on purpose: PostgreSQL turns a conflict into DO NOTHING only on its arbiter
   * indexes, and two concurrent claims of one key insert the same row, which also collides on the unique
   * resource_id index. With that index not an arbiter, the loser of the race got a unique violation (500).
   */
  async claim(accountId: string, key: string, operation: string, fingerprint: string, resourceId: string): Promise<IdempotencyLookup> {
    const inserted = await this.pool.query(
      `INSERT INTO idempotency_records (account_id, idempotency_key, operation, fingerprint, resource_id)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
      [accountId, key, operation, fingerprint, resourceId],
    );
    if (inserted.rowCount === 1) return { state: 'absent' };
    const holder = await this.lookup(accountId, key, operation, fingerprint);
    // The resource id is a hash of (account, key): another pair holding it would be a sha256 collision.
    if (holder.state === 'absent') throw new Error(`idempotency: resource id ${resourceId} is claimed by another account and key`);
    return holder;
  }

  /** Stores the answer unless one is stored already; returns the stored one and whether it was ours. */
  async complete(accountId: string, key: string, answer: StoredAnswer): Promise<{ answer: StoredAnswer; first: boolean }> {
    const updated = await this.pool.query(
      `UPDATE idempotency_records SET response_status = $3, response_body = $4, completed_at = now()
        WHERE account_id = $1 AND idempotency_key = $2 AND response_status IS NULL`,
      [accountId, key, answer.status, answer.body],
    );
    if (updated.rowCount === 1) return { answer, first: true };
    const { rows } = await this.pool.query<RecordRow>('SELECT response_status, response_body FROM idempotency_records WHERE account_id = $1 AND idempotency_key = $2', [accountId, key]);
    const row = rows[0]!;
    return { answer: { status: row.response_status!, body: row.response_body! }, first: false };
  }
}

function toLookup(row: RecordRow | undefined, operation: string, fingerprint: string): IdempotencyLookup {
  if (!row) return { state: 'absent' };
  if (row.operation !== operation || row.fingerprint !== fingerprint) return { state: 'mismatch' };
  if (row.response_status === null) return { state: 'in_progress', resourceId: row.resource_id, claimedAt: row.created_at };
  return { state: 'completed', resourceId: row.resource_id, answer: { status: row.response_status, body: row.response_body! } };
}

/** Sends a stored answer exactly as first sent: its status and bytes, with the resource's location. */
export function sendAnswer(reply: FastifyReply, answer: StoredAnswer, replayed: boolean, location: string): void {
  void reply
    .status(answer.status)
    .header('content-type', answer.status >= 400 ? PROBLEM_CONTENT_TYPE : 'application/json; charset=utf-8')
    .header('location', location);
  if (replayed) void reply.header('idempotent-replayed', 'true');
  void reply.send(answer.body);
}
