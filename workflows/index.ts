// Entry point of the workflow bundle: every workflow the worker runs is exported here.
export { selfCheckWorkflow } from './self-check';
export { payoutSaga } from './payout/payout.saga';
export { depositSaga } from './deposit/deposit.saga';
export { reconciliationWorkflow } from './reconciliation/reconciliation.workflow';
export { payoutReturnWorkflow } from './payout/return.workflow';
export { depositReversalWorkflow } from './deposit/reversal.workflow';
// Sagas started before the types above run on here until they close (their 7-day return window at most).
export { payoutWorkflow } from './legacy/payout.workflow';
export { depositWorkflow } from './legacy/deposit.workflow';
