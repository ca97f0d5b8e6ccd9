import { inTransaction, type Pool, type PoolClient } from '../../lib/db';

/**
 * The outbox publisher's SQL: fan-out of events into per-endpoint deliveries, claiming heads, recording
 * outcomes, dead letters with their replay and skip, lag numbers. Every function is one short transaction
 * (or statement); nothing is held open across an HTTP call. See migrations/0005_outbox.sql and 0021 for the
 * tables, endpoints.ts for the endpoints themselves. `endpoint` here is an endpoint's key (outbox_endpoints.endpoint).
 */

/** First key of the publisher's session advisory lock; the second is its owner id (1..2^31-1). */
export const OWNER_LOCK_NAMESPACE = 0x6f627831; // 'obx1'

export interface ClaimedDelivery {
  /** The endpoint's key. */
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
 * Creates the delivery rows of events the endpoint has not seen yet, for the event types its filter takes
 * (as the row says under its lock, so a filter change applies from one scan on). Event ids are not commit
 * order across accounts, so a cursor on ids could skip an event that commits late with a lower id. Instead
 * the scan covers every event written by a transaction that was still running at the previous scan (xid at
 * or above that scan's snapshot xmin): all older transactions had finished, and their events were seen.
 * The window is the age of the oldest running write transaction; ON CONFLICT makes the overlap harmless.
 * One publisher at a time fans out an endpoint (row lock, others skip); a disabled endpoint is not scanned,
 * so what is written while it is off reaches it once it is enabled again. Returns rows created, or
 * undefined when another publisher was busy with it (or it is disabled).
 */
export async function fanOut(pool: Pool, endpoint: string, accountIds?: readonly string[]): Promise<number | undefined> {
  return inTransaction(pool, async (db) => {
    // First statement, so everything older than this horizon is visible to the scan below (a later snapshot).
    const { rows: horizon } = await db.query<{ xmin: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin');
    const { rows: state } = await db.query<{ scanned_before: string; event_types: string[] }>(
      'SELECT scanned_before::text, event_types FROM outbox_endpoints WHERE endpoint = $1 AND enabled FOR UPDATE SKIP LOCKED',
      [endpoint],
    );
    if (!state[0]) return undefined;
    const inserted = await db.query(
      `INSERT INTO outbox_deliveries (endpoint, event_seq, account_id)
       SELECT $1, e.id, e.account_id FROM outbox_events e
        WHERE e.tx_id >= $2::xid8 AND ($3::text[] IS NULL OR e.account_id = ANY($3::text[])) AND outbox_event_type_matches($4::text[], e.event_type)
        ORDER BY e.id
       ON CONFLICT (endpoint, event_seq) DO NOTHING`,
      [endpoint, state[0].scanned_before, accountIds ?? null, state[0].event_types],
    );
    await db.query(
      `UPDATE outbox_endpoints SET scanned_before = greatest(scanned_before, $2::xid8) WHERE endpoint = $1`,
      [endpoint, horizon[0]!.xmin],
    );
    return inserted.rowCount ?? 0;
  });
}

/**
 * Claims up to `limit` deliveries that are due, each the head of its account (its lowest event neither
 * delivered nor skipped), so at most one event per account is in flight and a later event never overtakes an
 * earlier one. A dead-lettered head is such a head too, never claimed: the account's later events wait behind
 * it until staff replay it (it is due again) or skip it (the next one becomes the head). Other accounts go on.
 * The set of unsettled rows only shrinks (a replay reopens a row that was unsettled already), so a head seen
 * in the statement's snapshot is still the head, or settled, when its row is locked. A claim is
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
        WHERE endpoint = $1 AND delivered_at IS NULL AND skipped_at IS NULL
        ORDER BY account_id, event_seq
     ), picked AS (
       SELECT d.endpoint, d.event_seq
         FROM outbox_deliveries d JOIN heads h ON h.event_seq = d.event_seq
        WHERE d.endpoint = $1 AND d.delivered_at IS NULL AND d.dead_at IS NULL AND d.skipped_at IS NULL AND d.next_attempt_at <= now()
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
 * A failed attempt. Retries go on for `retryWindowMs` from the delivery's first failure, each after
 * `retryInMs` (never past the window's end, so the last attempt is made at it); the failure at or after the
 * end dead-letters the delivery (one statement, so the delivery is dead exactly when its dead letter exists).
 * The account's later events then wait behind it. Only while this owner still holds the claim: otherwise
 * another publisher has taken the event over.
 */
export async function markFailed(
  pool: Pool,
  d: ClaimedDelivery,
  owner: number,
  error: string,
  retryInMs: number,
  retryWindowMs: number,
): Promise<{ attempts: number; dead: boolean } | undefined> {
  const { rows } = await pool.query<{ attempts: number; dead: boolean }>(
    `WITH failed AS (
       UPDATE outbox_deliveries
          SET attempts = attempts + 1, last_error = $4, claimed_by = NULL, claimed_at = NULL,
              first_failed_at = coalesce(first_failed_at, now()),
              next_attempt_at = least(now() + $5 * interval '1 millisecond', coalesce(first_failed_at, now()) + $6 * interval '1 millisecond'),
              dead_at = CASE WHEN now() >= coalesce(first_failed_at, now()) + $6 * interval '1 millisecond' THEN now() END
        WHERE endpoint = $1 AND event_seq = $2 AND claimed_by = $3 AND delivered_at IS NULL AND dead_at IS NULL AND skipped_at IS NULL
        RETURNING endpoint, event_seq, attempts, last_error, dead_at, first_failed_at
     ), dead AS (
       INSERT INTO outbox_dead_letters (event_seq, event_id, endpoint, attempts, last_error, dead_at, first_failed_at)
       SELECT f.event_seq, e.event_id, f.endpoint, f.attempts, f.last_error, f.dead_at, f.first_failed_at
         FROM failed f JOIN outbox_events e ON e.id = f.event_seq
        WHERE f.dead_at IS NOT NULL
     )
     SELECT attempts, dead_at IS NOT NULL AS dead FROM failed`,
    [d.endpoint, d.eventSeq, owner, error.slice(0, 1000), retryInMs, retryWindowMs],
  );
  return rows[0];
}

export type DeadLetterState = 'open' | 'replayed' | 'skipped';

export interface DeadLetter {
  endpoint: string;
  eventSeq: number;
  eventId: string;
  eventType: string;
  accountId: string;
  attempts: number;
  lastError: string | null;
  firstFailedAt: string | null;
  deadAt: string;
  state: DeadLetterState;
  resolvedAt: string | null;
  resolvedBy: string | null;
  resolutionReason: string | null;
  /** The account's later events for this endpoint waiting behind it (open dead letters only; else 0). */
  heldEvents: number;
}

interface DeadLetterSqlRow {
  endpoint: string;
  event_seq: string;
  event_id: string;
  event_type: string;
  account_id: string;
  attempts: number;
  last_error: string | null;
  first_failed_at: Date | null;
  dead_at: Date;
  replayed_at: Date | null;
  skipped_at: Date | null;
  resolved_by: string | null;
  resolution_reason: string | null;
  held_events: number;
}

function deadLetterOf(r: DeadLetterSqlRow): DeadLetter {
  return {
    endpoint: r.endpoint,
    eventSeq: Number(r.event_seq),
    eventId: r.event_id,
    eventType: r.event_type,
    accountId: r.account_id,
    attempts: r.attempts,
    lastError: r.last_error,
    firstFailedAt: r.first_failed_at?.toISOString() ?? null,
    deadAt: r.dead_at.toISOString(),
    state: r.replayed_at ? 'replayed' : r.skipped_at ? 'skipped' : 'open',
    resolvedAt: (r.replayed_at ?? r.skipped_at)?.toISOString() ?? null,
    resolvedBy: r.resolved_by,
    resolutionReason: r.resolution_reason,
    heldEvents: r.held_events,
  };
}

/** Columns of a DeadLetter from `l` (outbox_dead_letters) and `p` (its endpoint); `e` is joined here. */
const DEAD_LETTER_COLUMNS = `p.name AS endpoint, l.event_seq, l.event_id::text, e.event_type, e.account_id, l.attempts, l.last_error, l.first_failed_at,
  l.dead_at, l.replayed_at, l.skipped_at, l.resolved_by, l.resolution_reason,
  CASE WHEN l.replayed_at IS NULL AND l.skipped_at IS NULL THEN
    (SELECT count(*) FROM outbox_deliveries h
      WHERE h.endpoint = l.endpoint AND h.account_id = e.account_id AND h.event_seq > l.event_seq AND h.delivered_at IS NULL AND h.skipped_at IS NULL)
  ELSE 0 END::int AS held_events`;

export interface DeadLetterFilter {
  /** Endpoint id, or (as scripts/outbox-replay.ts took it before endpoints had ids) its URL. */
  endpoint?: string;
  eventSeq?: number;
  eventId?: string;
  accountId?: string;
  state?: DeadLetterState | 'all';
  limit?: number;
}

/** Dead letters, oldest first; by default the open ones (holding their account's later events). */
export async function listDeadLetters(db: Pool | PoolClient, filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
  const { rows } = await db.query<DeadLetterSqlRow>(
    `SELECT ${DEAD_LETTER_COLUMNS}
       FROM outbox_dead_letters l JOIN outbox_endpoints p ON p.endpoint = l.endpoint JOIN outbox_events e ON e.id = l.event_seq
      WHERE ($1::text IS NULL OR p.name = $1 OR p.url = $1) AND ($2::bigint IS NULL OR l.event_seq = $2) AND ($3::uuid IS NULL OR l.event_id = $3::uuid)
        AND ($4::text IS NULL OR e.account_id = $4)
        AND CASE $5::text WHEN 'all' THEN true WHEN 'replayed' THEN l.replayed_at IS NOT NULL WHEN 'skipped' THEN l.skipped_at IS NOT NULL
                          ELSE l.replayed_at IS NULL AND l.skipped_at IS NULL END
      ORDER BY l.id LIMIT $6`,
    [filter.endpoint ?? null, filter.eventSeq ?? null, filter.eventId ?? null, filter.accountId ?? null, filter.state ?? 'open', filter.limit ?? 1000],
  );
  return rows.map(deadLetterOf);
}

export interface Resolution {
  actor: string;
  reason: string;
}

/**
 * Replays open dead letters (marked replayed_at, by whom and why) and reopens their deliveries with a fresh
 * retry window, due now. A reopened event is still its account's head, so it goes out before the account's
 * later events, which follow once it is delivered. One statement. Returns what was replayed, as it was.
 */
export async function replayDeadLetters(db: Pool | PoolClient, filter: Pick<DeadLetterFilter, 'endpoint' | 'eventSeq' | 'eventId'>, by: Resolution): Promise<DeadLetter[]> {
  const { rows } = await db.query<DeadLetterSqlRow & { reopened: boolean }>(
    `WITH replayed AS (
       UPDATE outbox_dead_letters l SET replayed_at = now(), resolved_by = $4, resolution_reason = $5
         FROM outbox_endpoints p
        WHERE p.endpoint = l.endpoint AND l.replayed_at IS NULL AND l.skipped_at IS NULL
          AND ($1::text IS NULL OR p.name = $1 OR p.url = $1) AND ($2::bigint IS NULL OR l.event_seq = $2) AND ($3::uuid IS NULL OR l.event_id = $3::uuid)
        RETURNING l.*, p.name
     ), reopened AS (
       UPDATE outbox_deliveries d
          SET dead_at = NULL, attempts = 0, first_failed_at = NULL, next_attempt_at = now(), claimed_by = NULL, claimed_at = NULL
         FROM replayed r
        WHERE d.endpoint = r.endpoint AND d.event_seq = r.event_seq AND d.dead_at IS NOT NULL AND d.skipped_at IS NULL
        RETURNING d.endpoint, d.event_seq
     )
     SELECT r.name AS endpoint, r.event_seq, r.event_id::text, e.event_type, e.account_id, r.attempts, r.last_error, r.first_failed_at, r.dead_at,
            r.replayed_at, r.skipped_at, r.resolved_by, r.resolution_reason, 0 AS held_events
       FROM replayed r JOIN outbox_events e ON e.id = r.event_seq
      ORDER BY r.id`,
    [filter.endpoint ?? null, filter.eventSeq ?? null, filter.eventId ?? null, by.actor, by.reason],
  );
  return rows.map(deadLetterOf);
}

/**
 * Skips an open dead letter: it stays undelivered for good (marked skipped_at, by whom and why), its delivery
 * is settled, and the account's next event becomes the head. One statement. Undefined: no open dead letter.
 */
export async function skipDeadLetter(db: Pool | PoolClient, endpointId: string, eventSeq: number, by: Resolution): Promise<DeadLetter | undefined> {
  const { rows } = await db.query<DeadLetterSqlRow>(
    `WITH skipped AS (
       UPDATE outbox_dead_letters l SET skipped_at = now(), resolved_by = $3, resolution_reason = $4
         FROM outbox_endpoints p
        WHERE p.endpoint = l.endpoint AND p.name = $1 AND l.event_seq = $2 AND l.replayed_at IS NULL AND l.skipped_at IS NULL
        RETURNING l.*, p.name
     ), settled AS (
       UPDATE outbox_deliveries d SET skipped_at = s.skipped_at, claimed_by = NULL, claimed_at = NULL
         FROM skipped s
        WHERE d.endpoint = s.endpoint AND d.event_seq = s.event_seq AND d.dead_at IS NOT NULL AND d.delivered_at IS NULL AND d.skipped_at IS NULL
        RETURNING d.event_seq
     )
     SELECT s.name AS endpoint, s.event_seq, s.event_id::text, e.event_type, e.account_id, s.attempts, s.last_error, s.first_failed_at, s.dead_at,
            s.replayed_at, s.skipped_at, s.resolved_by, s.resolution_reason, 0 AS held_events
       FROM skipped s JOIN outbox_events e ON e.id = s.event_seq`,
    [endpointId, eventSeq, by.actor, by.reason],
  );
  return rows[0] ? deadLetterOf(rows[0]) : undefined;
}

export interface OutboxLag {
  /** Events not yet delivered (nor dead-lettered or skipped) to at least one endpoint: held ones included. */
  pending_events: number;
  /** Age of the oldest of them; 0 when none. */
  oldest_pending_age_seconds: number;
  /** Dead letters neither replayed nor skipped: each holds its account's later events for its endpoint. */
  dead_letters: number;
  /** Deliveries waiting behind a dead letter of their account. */
  held_events: number;
}

/**
 * Numbers for /metrics, over the enabled endpoints (or the given endpoint ids); pending includes events not
 * fanned out yet (that their endpoint's filter takes).
 */
export async function outboxLag(pool: Pool, options: { endpoints?: readonly string[] } = {}): Promise<OutboxLag> {
  const { rows } = await pool.query<OutboxLag>(
    `WITH endpoints AS (
       SELECT endpoint, scanned_before, event_types FROM outbox_endpoints WHERE enabled AND ($1::text[] IS NULL OR name = ANY($1::text[]))
     ), unsettled AS (
       SELECT d.endpoint, d.account_id, d.event_seq, d.dead_at IS NOT NULL AS dead
         FROM outbox_deliveries d JOIN endpoints p ON p.endpoint = d.endpoint
        WHERE d.delivered_at IS NULL AND d.skipped_at IS NULL
     ), blocked AS (
       SELECT endpoint, account_id, min(event_seq) AS dead_seq FROM unsettled WHERE dead GROUP BY endpoint, account_id
     ), pending AS (
       SELECT event_seq FROM unsettled WHERE NOT dead
       UNION
       SELECT e.id FROM endpoints p JOIN outbox_events e ON e.tx_id >= p.scanned_before
        WHERE outbox_event_type_matches(p.event_types, e.event_type)
          AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.endpoint = p.endpoint AND d.event_seq = e.id)
     )
     SELECT (SELECT count(*) FROM pending)::int AS pending_events,
            coalesce(extract(epoch FROM now() - (SELECT min(e.created_at) FROM outbox_events e JOIN pending p ON p.event_seq = e.id)), 0)::float8
              AS oldest_pending_age_seconds,
            (SELECT count(*) FROM outbox_dead_letters l JOIN endpoints p ON p.endpoint = l.endpoint WHERE l.replayed_at IS NULL AND l.skipped_at IS NULL)::int AS dead_letters,
            (SELECT count(*) FROM unsettled u JOIN blocked b ON b.endpoint = u.endpoint AND b.account_id = u.account_id
              WHERE NOT u.dead AND u.event_seq > b.dead_seq)::int AS held_events`,
    [options.endpoints ?? null],
  );
  const row = rows[0]!;
  return { pending_events: row.pending_events, oldest_pending_age_seconds: Math.max(0, row.oldest_pending_age_seconds), dead_letters: row.dead_letters, held_events: row.held_events };
}

export interface EndpointDeliveryStats {
  /** Deliveries not settled yet and not dead (held ones included). */
  pending: number;
  dead_letters: number;
  held_events: number;
}

/** Per endpoint key: what is still to go, dead and held (for the staff listing). */
export async function endpointDeliveryStats(db: Pool | PoolClient, endpointKeys: readonly string[]): Promise<Map<string, EndpointDeliveryStats>> {
  const { rows } = await db.query<EndpointDeliveryStats & { endpoint: string }>(
    `WITH unsettled AS (
       SELECT endpoint, account_id, event_seq, dead_at IS NOT NULL AS dead FROM outbox_deliveries
        WHERE endpoint = ANY($1::text[]) AND delivered_at IS NULL AND skipped_at IS NULL
     ), blocked AS (
       SELECT endpoint, account_id, min(event_seq) AS dead_seq FROM unsettled WHERE dead GROUP BY endpoint, account_id
     )
     SELECT k.endpoint,
            (SELECT count(*) FROM unsettled u WHERE u.endpoint = k.endpoint AND NOT u.dead)::int AS pending,
            (SELECT count(*) FROM unsettled u WHERE u.endpoint = k.endpoint AND u.dead)::int AS dead_letters,
            (SELECT count(*) FROM unsettled u JOIN blocked b ON b.endpoint = u.endpoint AND b.account_id = u.account_id
              WHERE u.endpoint = k.endpoint AND NOT u.dead AND u.event_seq > b.dead_seq)::int AS held_events
       FROM unnest($1::text[]) AS k(endpoint)`,
    [endpointKeys],
  );
  return new Map(rows.map((r) => [r.endpoint, { pending: r.pending, dead_letters: r.dead_letters, held_events: r.held_events }]));
}
