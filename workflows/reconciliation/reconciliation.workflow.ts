import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { DEFAULT_RECONCILIATION_GRACE_SECONDS, type ReconciliationInput, type ReconciliationResult } from '../../contracts/reconciliation';

// Database and provider reads, retried for a while; a run that cannot finish fails without recording
// anything, so the next scheduled run covers its window too (windows start where the last recorded run ended).
const steps = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  scheduleToCloseTimeout: '15 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Compares the ledger with the provider: runs the ledger invariant checker, then checks the provider's
 * settlement report for the window against the ledger movements of each payout and deposit (and the
 * ledger's own final movements against the provider), and records the run with every mismatch.
 *
 * The window is [end of the last full run, action time − grace): a settlement younger than the grace period
 * may still have its saga moving, so it is left to the next run, which starts exactly where this one ended
 * (no gaps, no overlap). The action time is the run's start time, which for a schedule is its action time.
 */
export async function reconciliationWorkflow(input: ReconciliationInput = {}): Promise<ReconciliationResult> {
  const info = workflowInfo();
  const runId = `${info.workflowId}/${info.runId}`;
  const startedAt = info.runStartTime.toISOString();
  const actionTime = input.until ?? startedAt;
  const graceSeconds = input.graceSeconds ?? DEFAULT_RECONCILIATION_GRACE_SECONDS;
  if (!Number.isInteger(graceSeconds) || graceSeconds < 0) throw ApplicationFailure.nonRetryable(`graceSeconds must be a non-negative integer, got ${graceSeconds}`, 'InvalidInput');
  for (const [name, value] of [['until', input.until], ['since', input.since]] as const) {
    if (value !== undefined && Number.isNaN(Date.parse(value))) throw ApplicationFailure.nonRetryable(`${name} is not a date: ${value}`, 'InvalidInput');
  }
  const scope = input.references ? [...new Set(input.references)].sort() : null;

  const window = await steps.planReconciliationWindow({ until: actionTime, graceSeconds, since: input.since, scoped: scope !== null });
  const invariants = await steps.checkLedgerInvariants();
  const comparison = await steps.reconcileSettlements({ ...window, runId, ...(scope ? { references: scope } : {}) });
  return steps.recordReconciliationRun({ runId, workflowId: info.workflowId, window, actionTime, graceSeconds, scope, startedAt, invariants, comparison });
}
