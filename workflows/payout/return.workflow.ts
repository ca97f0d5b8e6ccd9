import { patched, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS } from '../shared';
import { differingTerms, unconfirmedClaim } from '../../contracts/provider-records';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
// Asked until it answers: a return is refunded only once the provider's own record says returned.
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);

export interface PayoutReturnInput {
  payoutId: string;
  returnReason: string;
  /** The provider event that reported the return. */
  eventId: string;
}

/**
 * A provider return that arrives after the payout saga has closed (past its return window): refund the
 * player with the same ledger key the saga itself would have used (`<payout id>:refund`), so a return is
 * refunded once whichever of the two handles it. The webhook is a claim: the provider's record must say
 * returned, for the amount, currency and destination of the payout, or nothing moves (an incident instead).
 */
export async function payoutReturnWorkflow(input: PayoutReturnInput): Promise<{ refunded: boolean; detail: string }> {
  if (patched('return-confirmed-with-provider')) {
    const refusal = await providerDisagrees(input);
    if (refusal) return { refunded: false, detail: refusal };
  }
  const outcome = await steps.refundClosedPayout({ payoutId: input.payoutId, idempotencyKey: `${input.payoutId}:refund`, returnReason: input.returnReason });
  if (outcome.refunded) {
    // Above any step counter of the saga itself: the read model shows the payout as returned.
    await steps.recordPayoutState({ payoutId: input.payoutId, version: 1_000_000, status: 'RETURNED', stuck: false });
  }
  return outcome;
}

/** Why the provider's record does not bear the return out; undefined when it does. */
async function providerDisagrees(input: PayoutReturnInput): Promise<string | undefined> {
  const terms = await steps.requestedPayoutTerms({ payoutId: input.payoutId });
  if (!terms) return 'no such payout in the read model';
  const seen = await provider.fetchProviderPayout({ payoutId: input.payoutId });
  const fields = seen ? differingTerms(terms, seen) : [];
  if (seen && seen.status === 'returned' && fields.length === 0) return undefined;
  const observed = seen ? { status: seen.status, providerPayoutId: seen.providerPayoutId, amount: seen.amount ?? null, destination: seen.destination ?? null } : { status: 'none' };
  const base = { sagaKind: 'payout' as const, reference: input.payoutId, expected: { ...terms } };
  if (fields.length > 0) {
    await steps.recordProviderIncident({ ...base, kind: 'record_mismatch', fields, observed, eventId: input.eventId });
  } else {
    const { claimedStatus, ...unconfirmed } = unconfirmedClaim({ eventId: input.eventId, providerStatus: 'returned' }, observed)!;
    await steps.recordProviderIncident({ ...base, ...unconfirmed, expected: { ...terms, status: claimedStatus } });
  }
  return fields.length > 0 ? `the provider's record differs from the payout (${fields.join(', ')})` : `the provider reports the payout ${seen?.status ?? 'unknown to it'}, not returned`;
}
