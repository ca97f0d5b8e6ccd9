import { WorkflowNotFoundError } from '@temporalio/client';
import { PAYOUT_NOT_RESOLVABLE, payoutStatusQuery, staffResolveUpdate, type PayoutView } from '../../../contracts/payout';
import { ProblemError } from '../common/problem';
import { failureOf, type SagaCalls } from '../sagas/saga-calls';

export interface ResolutionRequest {
  outcome: 'settle' | 'fail';
  reason: string;
}

/** Staff settle or fail a payout its provider leaves undecided: through the saga's validated update, exactly once. */
export class PayoutResolution {
  constructor(private readonly sagas: SagaCalls) {}

  /** A payout that could be resolved now, or the problem why not (404, 409, 503): checked before a request is opened. */
  async checkResolvable(payoutId: string): Promise<PayoutView> {
    const view = await this.sagas.query(payoutId, (handle) => handle.query(payoutStatusQuery));
    if (!view) throw new ProblemError('PAYOUT_NOT_FOUND', `No running payout saga ${payoutId}`);
    if (view.status !== 'SUBMITTED') throw new ProblemError('PAYOUT_NOT_RESOLVABLE', `Payout is ${view.status}; only a payout awaiting its provider can be resolved`);
    return view;
  }

  /**
   * Applies it. Under four eyes `approval` names the approver, and the update's id is the approval's, so a
   * retried approval cannot resolve twice.
   */
  async apply(payoutId: string, request: ResolutionRequest, actor: string, approval?: { id: number; by: string }): Promise<PayoutView> {
    try {
      // An update to a saga whose workflow task keeps failing would wait its whole deadline: refuse now.
      if (await this.sagas.taskIsFailing(payoutId)) throw this.sagas.unavailable(payoutId, 'staff_resolve', 'workflow task failing');
      // Long enough for a staff fail, which first asks the provider (its status check retries once).
      return await this.sagas.bounded(
        () =>
          this.sagas.handle(payoutId).executeUpdate(staffResolveUpdate, {
            args: [{ outcome: request.outcome, actor, reason: request.reason, ...(approval ? { approvedBy: approval.by } : {}) }],
            ...(approval ? { updateId: `approval:${approval.id}` } : {}),
          }),
        45_000,
      );
    } catch (err) {
      if (err instanceof ProblemError) throw err;
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('PAYOUT_NOT_FOUND', `No running payout saga ${payoutId}`);
      const refusal = failureOf(err);
      if (refusal?.type === PAYOUT_NOT_RESOLVABLE) throw new ProblemError('PAYOUT_NOT_RESOLVABLE', refusal.message);
      throw this.sagas.unavailableIfTaskFailing(err, payoutId, 'staff_resolve');
    }
  }
}
