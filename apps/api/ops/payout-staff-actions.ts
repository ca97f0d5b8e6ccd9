import { WorkflowNotFoundError } from '@temporalio/client';
import { PAYOUT_NOT_RESOLVABLE, PAYOUT_NOT_REVIEWABLE, payoutStatusQuery, reviewUpdate, staffResolveUpdate, type PayoutView } from '../../../contracts/payout';
import { ProblemError } from '../common/problem';
import { failureOf, type SagaCalls } from '../sagas/saga-calls';

export interface ResolutionRequest {
  outcome: 'settle' | 'fail';
  reason: string;
}

export interface ReviewRequest {
  decision: 'approve' | 'reject';
  reason: string;
  reason_code?: string;
}

/** Under four eyes: the approval a staff action carries (its approver, and its id for the saga update's). */
export interface Approved {
  id: number;
  by: string;
}

/**
 * What staff do to a payout saga by hand, each through the saga's validated update, exactly once: settle or
 * fail one its provider leaves undecided, and review one held for review.
 */
export class PayoutStaffActions {
  constructor(private readonly sagas: SagaCalls) {}

  /** A payout that could be resolved now, or the problem why not (404, 409, 503): checked before a request is opened. */
  async checkResolvable(payoutId: string): Promise<PayoutView> {
    return this.expect(payoutId, 'SUBMITTED', 'PAYOUT_NOT_RESOLVABLE', 'only a payout awaiting its provider can be resolved');
  }

  /** A payout pending review, or the problem why not. */
  async checkReviewable(payoutId: string): Promise<PayoutView> {
    return this.expect(payoutId, 'PENDING_REVIEW', 'PAYOUT_NOT_REVIEWABLE', 'only a payout pending review can be reviewed');
  }

  resolve(payoutId: string, request: ResolutionRequest, actor: string, approval?: Approved): Promise<PayoutView> {
    // Long enough for a staff fail, which first asks the provider (its status check retries once).
    return this.update(payoutId, 'staff_resolve', PAYOUT_NOT_RESOLVABLE, 'PAYOUT_NOT_RESOLVABLE', 45_000, (handle) =>
      handle.executeUpdate(staffResolveUpdate, {
        args: [{ outcome: request.outcome, actor, reason: request.reason, ...(approval ? { approvedBy: approval.by } : {}) }],
        ...(approval ? { updateId: `approval:${approval.id}` } : {}),
      }),
    );
  }

  review(payoutId: string, request: ReviewRequest, reviewer: string, approval?: Approved): Promise<PayoutView> {
    return this.update(payoutId, 'staff_review', PAYOUT_NOT_REVIEWABLE, 'PAYOUT_NOT_REVIEWABLE', 20_000, (handle) =>
      handle.executeUpdate(reviewUpdate, {
        args: [{ decision: request.decision, reviewer, reason: request.reason, ...(request.reason_code ? { reasonCode: request.reason_code } : {}), ...(approval ? { approvedBy: approval.by } : {}) }],
        ...(approval ? { updateId: `approval:${approval.id}` } : {}),
      }),
    );
  }

  private async expect(payoutId: string, status: PayoutView['status'], code: 'PAYOUT_NOT_RESOLVABLE' | 'PAYOUT_NOT_REVIEWABLE', why: string): Promise<PayoutView> {
    const view = await this.sagas.query(payoutId, (handle) => handle.query(payoutStatusQuery));
    if (!view) throw new ProblemError('PAYOUT_NOT_FOUND', `No running payout saga ${payoutId}`);
    if (view.status !== status) throw new ProblemError(code, `Payout is ${view.status}; ${why}`);
    return view;
  }

  /**
   * Runs an update, refused at once (503) when the saga's workflow task is failing: such an update would wait
   * its whole deadline. Under four eyes the update's id is the approval's, so a retried approval applies once.
   */
  private async update(
    payoutId: string,
    operation: string,
    refusalType: string,
    refusalCode: 'PAYOUT_NOT_RESOLVABLE' | 'PAYOUT_NOT_REVIEWABLE',
    deadlineMs: number,
    run: (handle: ReturnType<SagaCalls['handle']>) => Promise<PayoutView>,
  ): Promise<PayoutView> {
    try {
      if (await this.sagas.taskIsFailing(payoutId)) throw this.sagas.unavailable(payoutId, operation, 'workflow task failing');
      return await this.sagas.bounded(() => run(this.sagas.handle(payoutId)), deadlineMs);
    } catch (err) {
      if (err instanceof ProblemError) throw err;
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('PAYOUT_NOT_FOUND', `No running payout saga ${payoutId}`);
      const refusal = failureOf(err);
      if (refusal?.type === refusalType) throw new ProblemError(refusalCode, refusal.message);
      throw this.sagas.unavailableIfTaskFailing(err, payoutId, operation);
    }
  }
}
