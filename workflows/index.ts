// Entry point of the workflow bundle: every workflow the worker runs is exported here.
export { selfCheckWorkflow } from './self-check';
export { payoutWorkflow } from './payout/payout.workflow';
export { depositWorkflow } from './deposit/deposit.workflow';
export { reconciliationWorkflow } from './reconciliation/reconciliation.workflow';
export { payoutReturnWorkflow } from './payout/return.workflow';
