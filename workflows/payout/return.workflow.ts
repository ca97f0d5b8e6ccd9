import { proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { LEDGER_STEP_OPTIONS } from '../shared';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);

export interface PayoutReturnInput {
  payoutId: string;
  returnReason: string;
  /** The provider event that reported the return. */
  eventId: string;
}

/**
 * A provider return that arrives after the payout saga has closed (past its return window): refund the
 * player with the same ledger key the saga itself would have used (`<payout id>:refund`), so a return is
 * refunded once whichever of the two handles it.
 */
export async function payoutReturnWorkflow(input: PayoutReturnInput): Promise<{ refunded: boolean; detail: string }> {
  const outcome = await steps.refundClosedPayout({ payoutId: input.payoutId, idempotencyKey: `${input.payoutId}:refund`, returnReason: input.returnReason });
  if (outcome.refunded) {
    // Above any step counter of the saga itself: the read model shows the payout as returned.
    await steps.recordPayoutState({ payoutId: input.payoutId, version: 1_000_000, status: 'RETURNED', stuck: false });
  }
  return outcome;
}
