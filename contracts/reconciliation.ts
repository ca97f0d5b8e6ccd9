/**
 * The reconciliation run's contract, shared by the workflow, its activities, the schedule and the API.
 * No imports, so both the workflow bundle and ordinary Node code can load it.
 */

export const RECONCILIATION_WORKFLOW_TYPE = 'reconciliationWorkflow';

/**
 * Provider events (and ledger movements) newer than `until − grace` are left to the next run: the saga
 * usually moves within seconds of the provider's callback, but a poll-driven saga may need a minute or two.
 */
export const DEFAULT_RECONCILIATION_GRACE_SECONDS = 120;
/** The first run (no earlier one to continue from) looks back this far. */
export const DEFAULT_RECONCILIATION_LOOKBACK_MS = 24 * 60 * 60 * 1000;

export const MISMATCH_KINDS = ['missing_in_ledger', 'missing_at_provider', 'amount_mismatch', 'status_mismatch', 'ledger_invariant'] as const;
export type MismatchKind = (typeof MISMATCH_KINDS)[number];

export interface ReconciliationInput {
  /** End of the window (ISO 8601). Default: the run's start time, i.e. the schedule's action time. */
  until?: string;
  /** Start of the window. Default: where the last full run's window ended, else 24 h before `until`. */
  since?: string;
  /** Default DEFAULT_RECONCILIATION_GRACE_SECONDS; tests set 0. */
  graceSeconds?: number;
  /**
   * Diagnostics and tests only: compare just these payout/deposit ids. A scoped run neither advances the
   * schedule's window nor carries earlier mismatches over; the schedule always runs unscoped.
   */
  references?: string[];
}

export interface ReconciliationWindow {
  since: string;
  /** The covered end: `until − grace` (never before `since`). The next full run starts here. */
  until: string;
}

export interface SettlementComparison {
  providerItems: number;
  ledgerMovements: number;
  /** References looked up one by one at the provider (not in this window's report). */
  lookedUp: number;
  /** References with a mismatch in the previous full run, compared again. */
  carriedOver: number;
  mismatches: number;
  /** Each provider's own share: its report's items, the references looked up there, the findings about it. */
  byProvider?: Record<string, { providerItems: number; lookedUp: number; mismatches: number }>;
}

export interface ReconciliationResult {
  runId: string;
  since: string;
  until: string;
  status: 'clean' | 'mismatches';
  mismatches: number;
  byKind: Record<MismatchKind, number>;
  invariantViolations: number;
}

export type ItemKind = 'payout' | 'deposit';

/** The provider's view of one payout or deposit: an item of its settlement report, or a lookup by reference. */
export interface ProviderItem {
  id: string;
  kind: ItemKind;
  reference: string;
  amount: { minor_units: number; currency: string };
  /** payout: settled | failed | returned; deposit: succeeded | failed; `pending` only from a lookup. */
  status: string;
  /** When it became final (settled, succeeded or failed); absent while pending. */
  settled_at?: string;
  returned_at?: string;
  failure_code?: string;
  return_reason?: string;
  source: 'report' | 'lookup';
}

/** A count per mismatch kind, every kind present. */
export function emptyMismatchCounts(): Record<MismatchKind, number> {
  return Object.fromEntries(MISMATCH_KINDS.map((k) => [k, 0])) as Record<MismatchKind, number>;
}
