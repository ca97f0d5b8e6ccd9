import { inTransaction, type Pool } from '../../lib/db';

/**
 * The outbox publisher's SQL: fan-out of events into per-endpoint deliveries, claiming heads, recording
 * outcomes, dead letters and replay, lag numbers. Every function is one short transaction (or statement);
 * nothing is held open across an HTTP call. See migrations/0005_outbox.sql for the tables.
 */

/** First key of the publisher's session advisory lock; the second is its owner id (1..2^31-1). */
export const OWNER_LOCK_NAMESPACE = 0x6f627831; // 'obx1'

export interface ClaimedDelivery {
  endpoint: string;
  eventSeq: number;
  accountId: string;
  /** Attempts made before this one. */
  attempts: number;
  eventId: string;
  eventType: string;
  /** The payload exactly as stored (jsonb text): the webhook body, identical on every attempt. */
  body: string;
}

/**
 * Makes sure the endpoint is known, starting at the beginning of the outbox (`from: 'beginning'`) or at
 * events written from now on (`'now'`). An endpoint already known is left as it is.
 */
export async function registerEndpoint(pool: Pool, endpoint: string, from: 'beginning' | 'now' = 'beginning'): Promise<void> {
  await pool.query(
    `INSERT INTO outbox_endpoints (endpoint, scanned_before)
     VALUES ($1, CASE WHEN $2 THEN pg_snapshot_xmin(pg_current_snapshot()) ELSE '0'::xid8 END)
     ON CONFLICT (endpoint) DO NOTHING`,
    [endpoint, from === 'now'],
  );
}

/**
 * Creates the delivery rows of events the endpoint has not seen yet. Event ids are not commit order
 * across accounts, so a cursor on ids could skip an event that commits late with a lower id. Instead the
 * scan covers every event written by a transaction that was still running at the previous scan (xid at
 * or above that scan's snapshot xmin): all older transactions had finished, and their events were seen.
 * The window is the age of the oldest running write transaction; ON CONFLICT makes the overlap harmless.
 * One publisher at a time fans out an endpoint (row lock, others skip). Returns rows created, or
 * undefined when another publisher was busy with it.
 */
export async function fanOut(pool: Pool, endpoint: string, accountIds?: readonly string[]): Promise<number | undefined> {
  return inTransaction(pool, async (db) => {
    // First statement, so everything older than this horizon is visible to the scan below (a later snapshot).
    const { rows: horizon } = await db.query<{ xmin: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin');
    const { rows: state } = await db.query<{ scanned_before: string }>(
      'SELECT scanned_before::text FROM outbox_endpoints WHERE endpoint = $1 FOR UPDATE SKIP LOCKED',
      [endpoint],
    );
    if (!state[0]) return undefined;
    const inserted = await db.query(
      `INSERT INTO outbox_deliveries (endpoint, event_seq, account_id)
       SELECT $1, e.id, e.account_id FROM outbox_events e
        WHERE e.tx_id >= $2::xid8 AND ($3::text[] IS NULL OR e.account_id = ANY($3::text[]))
        ORDER BY e.id
       ON CONFLICT (endpoint, event_seq) DO NOTHING`,
      [endpoint, state[0].scanned_before, accountIds ?? null],
    );
    await db.query(
      `UPDATE outbox_endpoints SET scanned_before = greatest(scanned_before, $2::xid8), updated_at = now() WHERE endpoint = $1`,
      [endpoint, horizon[0]!.xmin],
    );
    return inserted.rowCount ?? 0;
  });
}

/**
 * Claims up to `limit` deliveries that are due, each the head (lowest open event) of its account, so at
 * most one event per account is in flight and a later event never overtakes an earlier one. A claim is
 * taken over when its owner's session lock is gone (the publisher died), when it is older than the
 * lease, or when it is this publisher's own (its previous round has ended, so nothing of it is in
 * flight). SKIP LOCKED lets concurrent publishers claim disjoint sets; the conditions on `d` are
 * re-checked on the locked row, so a head claimed by another publisher meanwhile is not taken twice.
 */
export async function claimDeliveries(pool: Pool, endpoint: string, owner: number, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
  const { rows } = await pool.query<{
    event_seq: number;
    account_id: string;
    attempts: number;
    event_id: string;
    event_type: string;
    body: string;
  }>(
    `WITH live_owners AS (
       SELECT l.objid::bigint AS owner FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $4::oid AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     ), heads AS (
       SELECT DISTINCT ON (account_id) event_seq
         FROM outbox_deliveries
        WHERE endpoint = $1 AND delivered_at IS NULL AND dead_at IS NULL
        ORDER BY account_id, event_seq
     ), picked AS (
       SELECT d.endpoint, d.event_seq
         FROM outbox_deliveries d JOIN heads h ON h.event_seq = d.event_seq
        WHERE d.endpoint = $1 AND d.delivered_at IS NULL AND d.dead_at IS NULL AND d.next_attempt_at <= now()
          AND (d.claimed_by IS NULL OR d.claimed_by = $2 OR d.claimed_at < now() - $5 * interval '1 millisecond'
               OR d.claimed_by NOT IN (SELECT owner FROM live_owners))
        ORDER BY d.event_seq
        LIMIT $3
          FOR UPDATE OF d SKIP LOCKED
     )
     UPDATE outbox_deliveries d SET claimed_by = $2, claimed_at = now()
       FROM picked p, outbox_events e
      WHERE d.endpoint = p.endpoint AND d.event_seq = p.event_seq AND e.id = d.event_seq
     RETURNING d.event_seq, d.account_id, d.attempts, e.event_id::text, e.event_type, e.payload::text AS body`,
    [endpoint, owner, limit, OWNER_LOCK_NAMESPACE, leaseMs],
  );
  return rows
    .map((r) => ({ endpoint, eventSeq: r.event_seq, accountId: r.account_id, attempts: r.attempts, eventId: r.event_id, eventType: r.event_type, body: r.body }))
    .sort((a, b) => a.eventSeq - b.eventSeq);
}

/** The endpoint answered 2xx. Recorded whoever holds the claim now: the event did arrive. */
export async function markDelivered(pool: Pool, d: ClaimedDelivery): Promise<void> {
  await pool.query(
    `UPDATE outbox_deliveries SET delivered_at = now(), attempts = attempts + 1, claimed_by = NULL, claimed_at = NULL
      WHERE endpoint = $1 AND event_seq = $2 AND delivered_at IS NULL AND dead_at IS NULL`,
    [d.endpoint, d.eventSeq],
  );
}

/**
 * A failed attempt: schedules the retry, or, at maxAttempts, dead-letters the delivery (one statement, so
 * the delivery is closed exactly when its dead letter exists), which lets the account's next event go.
 * Only while this owner still holds the claim: otherwise another publisher has taken the event over.
 */
export async function markFailed(
  pool: Pool,
  d: ClaimedDelivery,
  owner: number,
  error: string,
  retryInMs: number,
  maxAttempts: number,
): Promise<{ attempts: number; dead: boolean } | undefined> {
  const { rows } = await pool.query<{ attempts: number; dead: boolean }>(
    `WITH failed AS (
       UPDATE outbox_deliveries
          SET attempts = attempts + 1, last_error = $4, claimed_by = NULL, claimed_at = NULL,
              next_attempt_at = now() + $5 * interval '1 millisecond',
              dead_at = CASE WHEN attempts + 1 >= $6 THEN now() END
        WHERE endpoint = $1 AND event_seq = $2 AND claimed_by = $3 AND delivered_at IS NULL AND dead_at IS NULL
        RETURNING endpoint, event_seq, attempts, last_error, dead_at
     ), dead AS (
       INSERT INTO outbox_dead_letters (event_seq, event_id, endpoint, attempts, last_error, dead_at)
       SELECT f.event_seq, e.event_id, f.endpoint, f.attempts, f.last_error, f.dead_at
         FROM failed f JOIN outbox_events e ON e.id = f.event_seq
        WHERE f.dead_at IS NOT NULL
     )
     SELECT attempts, dead_at IS NOT NULL AS dead FROM failed`,
    [d.endpoint, d.eventSeq, owner, error.slice(0, 1000), retryInMs, maxAttempts],
  );
  return rows[0];
}

export interface ReplayedDeadLetter {
  eventId: string;
  endpoint: string;
  attempts: number;
  lastError: string | null;
  deadAt: string;
  /** False if the delivery was not dead any more (nothing to reopen). */
  reopened: boolean;
}

/**
 * Moves dead letters back to pending: marks them replayed and reopens their deliveries with a fresh
 * attempt budget. A reopened event is again the lowest open event of its account, so it goes out before
 * the account's events that are still pending. One transaction.
 */
export async function replayDeadLetters(pool: Pool, filter: { eventId?: string; endpoint?: string }): Promise<ReplayedDeadLetter[]> {
  const { rows } = await pool.query<{ event_id: string; endpoint: string; attempts: number; last_error: string | null; dead_at: Date; reopened: boolean }>(
    `WITH replayed AS (
       UPDATE outbox_dead_letters SET replayed_at = now()
        WHERE replayed_at IS NULL AND ($1::uuid IS NULL OR event_id = $1::uuid) AND ($2::text IS NULL OR endpoint = $2)
        RETURNING id, event_seq, event_id, endpoint, attempts, last_error, dead_at
     ), reopened AS (
       UPDATE outbox_deliveries d
          SET dead_at = NULL, attempts = 0, next_attempt_at = now(), claimed_by = NULL, claimed_at = NULL
         FROM replayed r
        WHERE d.endpoint = r.endpoint AND d.event_seq = r.event_seq AND d.dead_at IS NOT NULL
        RETURNING d.endpoint, d.event_seq
     )
     SELECT r.event_id::text, r.endpoint, r.attempts, r.last_error, r.dead_at, (o.event_seq IS NOT NULL) AS reopened
       FROM replayed r LEFT JOIN reopened o ON o.endpoint = r.endpoint AND o.event_seq = r.event_seq
      ORDER BY r.id`,
    [filter.eventId ?? null, filter.endpoint ?? null],
  );
  return rows.map((r) => ({ eventId: r.event_id, endpoint: r.endpoint, attempts: r.attempts, lastError: r.last_error, deadAt: r.dead_at.toISOString(), reopened: r.reopened }));
}

export interface OutboxLag {
  /** Events not yet delivered (nor dead-lettered) to at least one endpoint. */
  pending_events: number;
  /** Age of the oldest of them; 0 when none. */
  oldest_pending_age_seconds: number;
  /** Dead letters not replayed. */
  dead_letters: number;
}

/**
 * Numbers for /metrics. Counts over the given endpoints, by default every endpoint a publisher has
 * served; pending includes events not fanned out yet. With no endpoint, nothing is pending.
 */
export async function outboxLag(pool: Pool, options: { endpoints?: readonly string[] } = {}): Promise<OutboxLag> {
  const { rows } = await pool.query<{ pending_events: number; oldest_pending_age_seconds: number; dead_letters: number }>(
    `WITH endpoints AS (
       SELECT endpoint, scanned_before FROM outbox_endpoints WHERE $1::text[] IS NULL OR endpoint = ANY($1::text[])
       UNION ALL
       SELECT u.endpoint, '0'::xid8 FROM unnest($1::text[]) AS u(endpoint)
        WHERE NOT EXISTS (SELECT 1 FROM outbox_endpoints k WHERE k.endpoint = u.endpoint)
     ), pending AS (
       SELECT d.event_seq FROM outbox_deliveries d JOIN endpoints p ON p.endpoint = d.endpoint
        WHERE d.delivered_at IS NULL AND d.dead_at IS NULL
       UNION
       SELECT e.id FROM endpoints p JOIN outbox_events e ON e.tx_id >= p.scanned_before
        WHERE NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.endpoint = p.endpoint AND d.event_seq = e.id)
     )
     SELECT (SELECT count(*) FROM pending)::int AS pending_events,
            coalesce(extract(epoch FROM now() - (SELECT min(e.created_at) FROM outbox_events e JOIN pending p ON p.event_seq = e.id)), 0)::float8
              AS oldest_pending_age_seconds,
            (SELECT count(*) FROM outbox_dead_letters l JOIN endpoints p ON p.endpoint = l.endpoint WHERE l.replayed_at IS NULL)::int AS dead_letters`,
    [options.endpoints ?? null],
  );
  const row = rows[0]!;
  return { pending_events: row.pending_events, oldest_pending_age_seconds: Math.max(0, row.oldest_pending_age_seconds), dead_letters: row.dead_letters };
}
