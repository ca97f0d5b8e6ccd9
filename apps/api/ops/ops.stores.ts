/**
 * The SQL of the staff routes: the append-only audit log, account freezes, provider incidents, and the read
 * model's rows of payouts marked for a failing workflow task. Controllers call these; none runs SQL itself.
 */
import type { Pool, PoolClient } from '../../../lib/db';
import { ProblemError } from '../common/problem';

/** 'requested' and 'rejected': the steps of a four-eyes request (migrations/0017). */
export type AuditOutcome = 'applied' | 'refused' | 'error' | 'requested' | 'rejected';

export interface AuditEntry {
  actor: string;
  action: string;
  target: string;
  reason: string;
  request: unknown;
  outcome: AuditOutcome;
  detail: string;
}

/** Table `staff_audit_log`, append-only (its trigger refuses UPDATE and DELETE: migrations/0007). Given a
 * transaction's client, the change and its record commit together. */
export async function appendAudit(db: Pool | PoolClient, entry: AuditEntry): Promise<void> {
  await db.query('INSERT INTO staff_audit_log (actor, action, target, reason, request, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
    entry.actor,
    entry.action,
    entry.target,
    entry.reason,
    JSON.stringify(entry.request ?? {}),
    entry.outcome,
    entry.detail.slice(0, 2000),
  ]);
}

/**
 * Runs a staff action and writes its audit entry: `applied` with the detail the action returns, `refused` for
 * a problem of the request (4xx), `error` otherwise. An action that returns no detail (a four-eyes request,
 * audited as requested where it was opened) writes nothing more.
 */
export async function audited<T>(pool: Pool, entry: Omit<AuditEntry, 'outcome' | 'detail'>, run: () => Promise<{ result: T; detail?: string }>): Promise<T> {
  let done: { result: T; detail?: string };
  try {
    done = await run();
  } catch (err) {
    const refused = err instanceof ProblemError && err.status < 500;
    await appendAudit(pool, { ...entry, outcome: refused ? 'refused' : 'error', detail: refused ? `${err.code}: ${err.message}` : String(err) });
    throw err;
  }
  if (done.detail !== undefined) await appendAudit(pool, { ...entry, outcome: 'applied', detail: done.detail });
  return done.result;
}

export async function auditTrail(pool: Pool, target: string): Promise<{ id: number; at: string; actor: string; action: string; target: string; reason: string; outcome: string; detail: string }[]> {
  const { rows } = await pool.query<{ id: string; at: Date; actor: string; action: string; target: string; reason: string; outcome: string; detail: string }>(
    'SELECT id, at, actor, action, target, reason, outcome, detail FROM staff_audit_log WHERE target = $1 ORDER BY id',
    [target],
  );
  return rows.map((row) => ({ ...row, id: Number(row.id), at: row.at.toISOString() }));
}

export interface AccountStatusRow {
  account_id: string;
  status: 'active' | 'frozen';
  reason: string;
  changed_by: string;
  changed_at: Date;
}

export async function accountStatus(db: Pool | PoolClient, accountId: string): Promise<AccountStatusRow | undefined> {
  const { rows } = await db.query<AccountStatusRow>('SELECT * FROM account_status WHERE account_id = $1', [accountId]);
  return rows[0];
}

/** Table `account_status`: a frozen account's new payouts are declined at authorization. */
export async function setAccountStatus(db: PoolClient, accountId: string, status: 'active' | 'frozen', reason: string, actor: string): Promise<AccountStatusRow> {
  const { rows } = await db.query<AccountStatusRow>(
    `INSERT INTO account_status (account_id, status, reason, changed_by) VALUES ($1, $2, $3, $4)
     ON CONFLICT (account_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, changed_by = EXCLUDED.changed_by, changed_at = now()
     RETURNING *`,
    [accountId, status, reason, actor],
  );
  return rows[0]!;
}

export interface IncidentRow {
  id: number;
  saga_kind: 'payout' | 'deposit';
  reference: string;
  kind: 'record_mismatch' | 'claim_not_confirmed' | 'claim_contradicted';
  fields: string[];
  expected: Record<string, unknown>;
  observed: Record<string, unknown>;
  event_id: string | null;
  created_at: string;
}

/** Table `provider_incidents`, newest first. */
export async function listIncidents(pool: Pool, filter: { reference?: string; kind?: string; limit: number }): Promise<IncidentRow[]> {
  const { rows } = await pool.query<Omit<IncidentRow, 'id' | 'created_at'> & { id: string; created_at: Date }>(
    `SELECT id, saga_kind, reference, kind, fields, expected, observed, event_id, created_at FROM provider_incidents
      WHERE ($1::text IS NULL OR reference = $1) AND ($2::text IS NULL OR kind = $2) ORDER BY id DESC LIMIT $3`,
    [filter.reference ?? null, filter.kind ?? null, filter.limit],
  );
  return rows.map((row) => ({ ...row, id: Number(row.id), created_at: row.created_at.toISOString() }));
}

export interface PayoutRow {
  payout_id: string;
  account_id: string;
  status: string;
  provider: string;
  amount_minor: number;
  currency: string;
  requested_at: Date;
}

/** The read model's rows (table `payouts`) of these payouts: none for a saga stopped before authorization. */
export async function payoutRows(pool: Pool, payoutIds: string[]): Promise<Map<string, PayoutRow>> {
  const { rows } = await pool.query<PayoutRow>('SELECT payout_id, account_id, status, provider, amount_minor, currency, requested_at FROM payouts WHERE payout_id = ANY($1)', [payoutIds]);
  return new Map(rows.map((row) => [row.payout_id, row]));
}
