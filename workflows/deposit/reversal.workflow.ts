import { proxyActivities, proxyLocalActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { ChargebackOutcome } from '../../activities/deposits';
import type { DepositReversalInput } from '../../contracts/deposit';
import { differingTerms, unconfirmedClaim } from '../../contracts/provider-records';
import { LEDGER_STEP_OPTIONS, PROVIDER_CALL_OPTIONS } from '../shared';

const steps = proxyLocalActivities<Activities>(LEDGER_STEP_OPTIONS);
const provider = proxyActivities<Activities>(PROVIDER_CALL_OPTIONS);

/** A reversal that arrives before the deposit saga credited the deposit waits for the credit this long at most. */
const CREDIT_WAIT_MS = 30 * 60_000;
const CREDIT_RECHECK_MS = 30_000;
const RECORD_RECHECK_MS = [1_000, 2_000, 4_000];

/**
 * A deposit charged back after it was credited: the player's account gives the amount back once (ledger keys
 * `<deposit id>:chargeback`, `:chargeback:collect`); what its balance cannot cover becomes its debt, repaid by
 * later deposits. A provider's deposit.reversed webhook is a claim: its own record must say reversed, for the
 * deposit's amount and currency, or nothing moves (an incident for staff). A staff chargeback (four eyes) is
 * the staff's call.
 */
export async function depositReversalWorkflow(input: DepositReversalInput): Promise<{ reversed: boolean; detail: string }> {
  if (input.source === 'provider') {
    const refusal = await providerDisagrees(input);
    if (refusal) return { reversed: false, detail: refusal };
  }
  let outcome: ChargebackOutcome;
  for (let waited = 0; ; waited += CREDIT_RECHECK_MS) {
    outcome = await steps.chargeBackDeposit({ depositId: input.depositId, reason: input.reason, source: input.source, ...(input.requestedBy ? { actor: input.requestedBy } : {}) });
    // Reversed before its saga credited it (a race with the provider's own callbacks): wait for the credit.
    if (outcome.outcome !== 'not_credited' || outcome.depositStatus === 'FAILED' || waited >= CREDIT_WAIT_MS) break;
    await sleep(CREDIT_RECHECK_MS);
  }
  if (outcome.outcome === 'reversed') return { reversed: true, detail: `reversed ${outcome.amount}: ${outcome.collected} taken from the balance, ${outcome.debt} owed` };
  return { reversed: false, detail: outcome.outcome === 'not_credited' ? `the deposit was never credited (${outcome.depositStatus}): nothing to take back` : 'no such deposit' };
}

/** Why the provider's record does not bear the reversal out; undefined when it does. */
async function providerDisagrees(input: DepositReversalInput): Promise<string | undefined> {
  const terms = await steps.requestedDepositTerms({ depositId: input.depositId });
  if (!terms) return 'no such deposit in the read model';
  // A provider may send the webhook a moment before its record says so: asked again a few times first.
  let seen = await provider.fetchProviderDeposit({ depositId: input.depositId });
  for (const delay of RECORD_RECHECK_MS) {
    if (seen?.reversed) break;
    await sleep(delay);
    seen = await provider.fetchProviderDeposit({ depositId: input.depositId });
  }
  const fields = seen ? differingTerms({ amount: terms.amount }, seen) : [];
  if (seen?.reversed && fields.length === 0) return undefined;
  const observed = seen ? { status: seen.reversed ? 'reversed' : seen.status, providerDepositId: seen.providerDepositId, amount: seen.amount ?? null } : { status: 'none' };
  const base = { sagaKind: 'deposit' as const, reference: input.depositId, expected: { amount: terms.amount } };
  if (fields.length > 0) {
    await steps.recordProviderIncident({ ...base, kind: 'record_mismatch', fields, observed, ...(input.eventId ? { eventId: input.eventId } : {}) });
    return `the provider's record differs from the deposit (${fields.join(', ')})`;
  }
  const { claimedStatus, ...unconfirmed } = unconfirmedClaim({ eventId: input.eventId ?? 'none', providerStatus: 'reversed' }, observed)!;
  await steps.recordProviderIncident({ ...base, ...unconfirmed, expected: { amount: terms.amount, status: claimedStatus } });
  return `the provider reports the deposit ${observed.status}, not reversed`;
}
