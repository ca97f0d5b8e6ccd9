/**
 * What the sagas share: the search attribute keys staff filter on, and the activity options that
 * encode the platform's retry rules. Workflow-safe (no I/O); imported by every workflow.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import { workflowInfo, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';

export const SA = {
  PayoutStatus: defineSearchAttributeKey('PayoutStatus', SearchAttributeType.KEYWORD),
  AccountId: defineSearchAttributeKey('AccountId', SearchAttributeType.KEYWORD),
  Provider: defineSearchAttributeKey('Provider', SearchAttributeType.KEYWORD),
  Currency: defineSearchAttributeKey('Currency', SearchAttributeType.KEYWORD),
  AmountMinor: defineSearchAttributeKey('AmountMinor', SearchAttributeType.INT),
  PayoutStuck: defineSearchAttributeKey('PayoutStuck', SearchAttributeType.BOOL),
};

/**
 * The search attributes a saga starts with: set by the API when it starts the saga (no history event of
 * their own); a saga started without them adds them itself.
 */
export function startSearchAttributes(input: { accountId: string; provider: string; amount: { minor_units: number; currency: string } }): SearchAttributePair[] {
  return [
    { key: SA.AccountId, value: input.accountId },
    { key: SA.Provider, value: input.provider },
    { key: SA.Currency, value: input.amount.currency },
    { key: SA.AmountMinor, value: input.amount.minor_units },
    { key: SA.PayoutStatus, value: 'REQUESTED' },
    { key: SA.PayoutStuck, value: false },
  ];
}

/**
 * Ledger and database steps: short and idempotent, retried until they succeed; business refusals come
 * back as values. Run as local activities: inside the workflow task, without a server round trip each.
 */
export const LEDGER_STEP_OPTIONS: LocalActivityOptions = {
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds', nonRetryableErrorTypes: ['LedgerInconsistency'] },
};

/** Calls to the provider: an outage is waited out (never assumed a failure); a refusal is final. */
export const PROVIDER_CALL_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', nonRetryableErrorTypes: ['ProviderRejected'] },
};

/**
 * Reading the provider's record of an item (to confirm a webhook's claim, or a poll): a short GET, run as a
 * local activity inside the workflow task that needs it, so a callback settles in one task, not two.
 * Unanswered after two tries, the saga treats the provider as unreachable and asks again later.
 */
export const PROVIDER_LOOKUP_OPTIONS: LocalActivityOptions = { startToCloseTimeout: '5 seconds', retry: { initialInterval: '500 milliseconds', maximumAttempts: 2 } };

/** Status polls: a failed poll is simply tried again at the next poll. */
export const PROVIDER_POLL_OPTIONS: ActivityOptions = { startToCloseTimeout: '20 seconds', retry: { maximumAttempts: 2 } };

/** A saga waiting on a silent provider must not grow one history without bound: time to continue as new. */
export function historyIsLong(limit = 10_000): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || info.historyLength >= limit;
}
