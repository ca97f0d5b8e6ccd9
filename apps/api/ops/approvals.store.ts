/** Table `approval_requests` (migrations/0017): four-eyes requests and their decisions. */
import type { ApprovalAction } from '../../../contracts/approvals';
import type { Pool, PoolClient } from '../../../lib/db';
export type ApprovalStatus = 'pending' | 'approving' | 'approved' | 'rejected' | 'failed';

export interface ApprovalRow {
  id: number;
  action: ApprovalAction;
  target: string;
  payload: Record<string, unknown>;
  reason: string;
  requested_by: string;
  requested_at: Date;
  status: ApprovalStatus;
  decided_by: string | null;
  decided_at: Date | null;
  decision_reason: string | null;
  outcome_detail: string | null;
}

const toRow = (row: ApprovalRow & { id: string | number }): ApprovalRow => ({ ...row, id: Number(row.id) });

/** A new pending request, or the open one for this action and target (created: false). */
export async function openApproval(db: Pool | PoolClient, request: Pick<ApprovalRow, 'action' | 'target' | 'payload' | 'reason' | 'requested_by'>): Promise<{ row: ApprovalRow; created: boolean }> {
  const { rows } = await db.query<ApprovalRow>(
    `INSERT INTO approval_requests (action, target, payload, reason, requested_by) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (action, target) WHERE status IN ('pending', 'approving') DO NOTHING RETURNING *`,
    [request.action, request.target, JSON.stringify(request.payload), request.reason, request.requested_by],
  );
  if (rows[0]) return { row: toRow(rows[0]), created: true };
  const open = await db.query<ApprovalRow>("SELECT * FROM approval_requests WHERE action = $1 AND target = $2 AND status IN ('pending', 'approving')", [request.action, request.target]);
  if (!open.rows[0]) return openApproval(db, request); // decided in between: try again
  return { row: toRow(open.rows[0]), created: false };
}

export async function getApproval(db: Pool | PoolClient, id: number): Promise<ApprovalRow | undefined> {
  const { rows } = await db.query<ApprovalRow>('SELECT * FROM approval_requests WHERE id = $1', [id]);
  return rows[0] && toRow(rows[0]);
}

export async function listApprovals(pool: Pool, filter: { status?: ApprovalStatus; limit: number }): Promise<ApprovalRow[]> {
  const { rows } = await pool.query<ApprovalRow>(
    `SELECT * FROM approval_requests WHERE ($1::text IS NULL AND status IN ('pending', 'approving')) OR status = $1 ORDER BY id LIMIT $2`,
    [filter.status ?? null, filter.limit],
  );
  return rows.map(toRow);
}

/** An approval left `approving` this long (its approver's apply failed with an unknown outcome) may be taken over. */
export const APPROVING_LEASE_SECONDS = 300;

/**
 * Claims a pending request for one decider (`approving` or `rejected`): the one UPDATE that wins among
 * concurrent deciders. A request already `approving` is claimed again to approve it (never to reject it: its
 * action may have taken effect) by the same decider (its retry), or by another once its lease has run out.
 */
export async function claimDecision(db: Pool | PoolClient, id: number, decidedBy: string, decision: 'approving' | 'rejected', reason: string): Promise<ApprovalRow | undefined> {
  const { rows } = await db.query<ApprovalRow>(
    `UPDATE approval_requests SET status = $3, decided_by = $2, decided_at = now(), decision_reason = $4
      WHERE id = $1 AND requested_by <> $2
        AND (status = 'pending'
             OR (status = 'approving' AND $3 = 'approving' AND (decided_by = $2 OR decided_at < now() - make_interval(secs => $5))))
      RETURNING *`,
    [id, decidedBy, decision, reason, APPROVING_LEASE_SECONDS],
  );
  return rows[0] && toRow(rows[0]);
}

/** Ends a claimed request; one already ended (a concurrent retry by its approver finished it) is returned as it is. */
export async function finishApproval(db: Pool | PoolClient, id: number, status: 'approved' | 'failed', detail: string): Promise<ApprovalRow> {
  const { rows } = await db.query<ApprovalRow>("UPDATE approval_requests SET status = $2, outcome_detail = $3 WHERE id = $1 AND status = 'approving' RETURNING *", [id, status, detail.slice(0, 2000)]);
  return rows[0] ? toRow(rows[0]) : (await getApproval(db, id))!;
}
