/**
 * What the sagas share: the activity options that encode the platform's retry rules, and when a history is
 * long enough to continue as new. Workflow-safe (no I/O); imported by every workflow.
 */
import { workflowInfo, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';

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
