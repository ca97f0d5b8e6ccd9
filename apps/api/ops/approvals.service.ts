import { z } from 'zod';
import { APPROVER_IS_REQUESTER, type ApprovalAction } from '../../../contracts/approvals';
import type { Config } from '../../../lib/config';
import { inTransaction, type Pool } from '../../../lib/db';
import { ProblemError } from '../common/problem';
import { canonicalJson } from '../sagas/idempotency';
import { toPayoutBody } from '../payouts/payouts.service';
import { claimDecision, finishApproval, getApproval, listApprovals, openApproval, type ApprovalRow, type ApprovalStatus } from './approvals.store';
import { accountStatus, appendAudit, setAccountStatus } from './ops.stores';
import type { DepositChargebacks } from './deposit-chargebacks';
import type { PayoutStaffActions, ResolutionRequest, ReviewRequest } from './payout-staff-actions';

export const approvalBody = z.object({
  approval_id: z.number(),
  action: z.string(),
  target: z.string(),
  payload: z.record(z.string(), z.unknown()),
  reason: z.string(),
  requested_by: z.string(),
  requested_at: z.string(),
  status: z.enum(['pending', 'approving', 'approved', 'rejected', 'failed']),
  decided_by: z.string().optional(),
  decided_at: z.string().optional(),
  decision_reason: z.string().optional(),
  outcome_detail: z.string().optional(),
});
export type ApprovalBody = z.infer<typeof approvalBody>;

/** What an approved request does, by action; a ProblemError is a refusal (the request ends `failed`). */
type Apply = (row: ApprovalRow, approvedBy: string) => Promise<{ detail: string; result: unknown }>;

/**
 * Four eyes: a manual money action named in FOUR_EYES_ACTIONS is a request by one staff member that a
 * different one approves (it then takes effect, as the requester's action approved by the approver) or
 * rejects. Guarantees, each with what enforces it:
 * - nobody approves their own request: APPROVER_IS_REQUESTER here, CHECK decided_by <> requested_by below;
 * - one open request per action and target: the partial UNIQUE index approval_requests_one_open;
 * - a request is decided once: claimDecision's conditional UPDATE; a payout is resolved once even if the
 *   approval is retried: the saga update's id is the approval's;
 * - every step (requested, approved and applied or refused, rejected) is in the append-only staff audit log.
 */
export class Approvals {
  private readonly apply: Record<ApprovalAction, Apply>;

  constructor(
    private readonly config: Config,
    private readonly pool: Pool,
    payouts: PayoutStaffActions,
    chargebacks: DepositChargebacks,
  ) {
    this.apply = {
      payout_resolve: async (row, approvedBy) => {
        const view = await payouts.resolve(row.target, row.payload as unknown as ResolutionRequest, row.requested_by, { id: row.id, by: approvedBy });
        return { detail: `now ${view.status}`, result: toPayoutBody(view, 'staff') };
      },
      payout_review: async (row, approvedBy) => {
        const view = await payouts.review(row.target, row.payload as unknown as ReviewRequest, row.requested_by, { id: row.id, by: approvedBy });
        return { detail: `now ${view.status}`, result: toPayoutBody(view, 'staff') };
      },
      chargeback: async (row, approvedBy) => {
        const outcome = await chargebacks.apply(row.target, row.reason, row.requested_by, approvedBy);
        return { detail: outcome.detail, result: { deposit_id: row.target, ...outcome } };
      },
      account_unfreeze: async (row) => {
        const status = await inTransaction(this.pool, async (db) => {
          // Only the freeze the request was made for: frozen again since (another reason), the request is stale.
          const current = await accountStatus(db, row.target);
          const frozenAt = (row.payload as { frozen_at?: string }).frozen_at;
          if (current?.status !== 'frozen' || (frozenAt !== undefined && current.changed_at.toISOString() !== frozenAt)) {
            throw new ProblemError('APPROVAL_STALE', `The account's status changed since the request (now ${current?.status ?? 'active'}, since ${current?.changed_at.toISOString() ?? 'never'})`);
          }
          return setAccountStatus(db, row.target, 'active', row.reason, row.requested_by);
        });
        return { detail: 'now active', result: { ...status, changed_at: status.changed_at.toISOString() } };
      },
    };
  }

  /** Whether this action waits for a second staff member. */
  needsApproval(action: ApprovalAction): boolean {
    return this.config.FOUR_EYES_ACTIONS.includes(action);
  }

  /**
   * Opens a request (audited as requested). The same requester asking again for the same thing gets its open
   * request back; anything else while one is open is APPROVAL_PENDING (409).
   */
  async request(action: ApprovalAction, target: string, payload: Record<string, unknown>, reason: string, requestedBy: string, auditAction: string): Promise<ApprovalBody> {
    const { row, created } = await inTransaction(this.pool, async (db) => {
      const opened = await openApproval(db, { action, target, payload, reason, requested_by: requestedBy });
      if (opened.created) await appendAudit(db, { actor: requestedBy, action: auditAction, target, reason, request: payload, outcome: 'requested', detail: `approval ${opened.row.id}: awaiting a second staff member` });
      return opened;
    });
    if (!created && (row.requested_by !== requestedBy || canonicalJson(row.payload) !== canonicalJson(payload))) {
      throw new ProblemError('APPROVAL_PENDING', `Approval ${row.id} (${row.action} of ${target}, requested by ${row.requested_by}) is open; decide it first`);
    }
    return toBody(row);
  }

  async list(filter: { status?: ApprovalStatus; limit: number }): Promise<ApprovalBody[]> {
    return (await listApprovals(this.pool, filter)).map(toBody);
  }

  /** Approves (the action takes effect now) or rejects a request; never the requester's own. */
  async decide(id: number, decision: 'approve' | 'reject', reason: string, decidedBy: string): Promise<{ approval: ApprovalBody; result?: unknown }> {
    const current = await getApproval(this.pool, id);
    if (!current) throw new ProblemError('APPROVAL_NOT_FOUND', `No approval request ${id}`);
    const auditAction = `approval:${decision}`;
    if (current.requested_by === decidedBy) {
      await appendAudit(this.pool, { actor: decidedBy, action: auditAction, target: current.target, reason, request: { approval_id: id }, outcome: 'refused', detail: APPROVER_IS_REQUESTER });
      throw new ProblemError('APPROVER_IS_REQUESTER', 'A request is approved or rejected by another staff member than the one who made it');
    }
    const claimed = await claimDecision(this.pool, id, decidedBy, decision === 'approve' ? 'approving' : 'rejected', reason);
    if (!claimed) throw new ProblemError('APPROVAL_DECIDED', `Approval ${id} is ${current.status}${current.decided_by ? ` (by ${current.decided_by})` : ''}`);
    if (decision === 'reject') {
      await appendAudit(this.pool, { actor: decidedBy, action: auditAction, target: claimed.target, reason, request: { approval_id: id }, outcome: 'rejected', detail: `approval ${id} of ${claimed.action} requested by ${claimed.requested_by}: rejected` });
      return { approval: toBody(claimed) };
    }
    try {
      const { detail, result } = await this.apply[claimed.action](claimed, decidedBy);
      const approved = await finishApproval(this.pool, id, 'approved', detail);
      await appendAudit(this.pool, { actor: decidedBy, action: auditAction, target: claimed.target, reason, request: { approval_id: id }, outcome: 'applied', detail: `approval ${id} of ${claimed.action} requested by ${claimed.requested_by}: ${detail}` });
      return { approval: toBody(approved), result };
    } catch (err) {
      if (!(err instanceof ProblemError) || err.status >= 500) {
        // Unknown outcome (e.g. Temporal unreachable): the request stays claimed, and this approver may retry it.
        await appendAudit(this.pool, { actor: decidedBy, action: auditAction, target: claimed.target, reason, request: { approval_id: id }, outcome: 'error', detail: String(err) });
        throw err;
      }
      const failed = await finishApproval(this.pool, id, 'failed', `${err.code}: ${err.message}`);
      await appendAudit(this.pool, { actor: decidedBy, action: auditAction, target: claimed.target, reason, request: { approval_id: id }, outcome: 'refused', detail: `approval ${id}: ${err.code}: ${err.message}` });
      throw new ProblemError(err.code, `${err.message} (approval ${failed.id} ended failed)`);
    }
  }
}

function toBody(row: ApprovalRow): ApprovalBody {
  return approvalBody.parse({
    approval_id: row.id,
    action: row.action,
    target: row.target,
    payload: row.payload,
    reason: row.reason,
    requested_by: row.requested_by,
    requested_at: row.requested_at.toISOString(),
    status: row.status,
    ...(row.decided_by ? { decided_by: row.decided_by } : {}),
    ...(row.decided_at ? { decided_at: row.decided_at.toISOString() } : {}),
    ...(row.decision_reason ? { decision_reason: row.decision_reason } : {}),
    ...(row.outcome_detail ? { outcome_detail: row.outcome_detail } : {}),
  });
}
