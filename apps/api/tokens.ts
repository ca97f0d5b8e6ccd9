/** Injection tokens: explicit, because the API does not rely on emitted decorator metadata. */
export const CONFIG = Symbol('CONFIG');
export const PG_POOL = Symbol('PG_POOL');
export const TEMPORAL_CLIENT = Symbol('TEMPORAL_CLIENT');
export const METRICS = Symbol('METRICS');
export const LEDGER = Symbol('LEDGER');
export const PAYOUTS_SERVICE = Symbol('PAYOUTS_SERVICE');
export const DEPOSITS_SERVICE = Symbol('DEPOSITS_SERVICE');
export const SAGA_CALLS = Symbol('SAGA_CALLS');
export const IDEMPOTENT_START = Symbol('IDEMPOTENT_START');
export const WORKFLOW_TASK_FAILURES = Symbol('WORKFLOW_TASK_FAILURES');
export const TRAFFIC = Symbol('TRAFFIC');
export const WEBHOOK_INTAKE = Symbol('WEBHOOK_INTAKE');
export const APPROVALS = Symbol('APPROVALS');
export const PAYOUT_STAFF_ACTIONS = Symbol('PAYOUT_STAFF_ACTIONS');
export const DEPOSIT_CHARGEBACKS = Symbol('DEPOSIT_CHARGEBACKS');
