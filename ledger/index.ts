/**
 * The double-entry ledger: the only code that moves money. Commands (commands.ts: accounts, transfer,
 * hold, post, void, refund; its concurrency design is written there) are used by the activities; reads
 * (reads.ts: accounts, balances, totals, transfers) by the API, the scripts and the benchmarks. Refusals
 * are values with result codes in precedence order (TRANSFER_ERROR_CODES), and a key reused for another
 * command is told which field differs first (the exists_with_different_* family, as for accounts).
 *
 * Guarantees, each with what enforces it (migrations/0002_ledger.sql unless named):
 * - A transfer happens once per idempotency key: UNIQUE `ledger_transfers_idempotency_key_unique`; a repeat
 *   with other parameters is refused (exists_with_different_*) by the stored `request_fingerprint`.
 * - A hold is posted or voided at most once: UNIQUE INDEX `ledger_transfers_resolved_once` on `pending_id`.
 * - A player account never goes below zero, pending debits included: CHECK `ledger_balances_no_overdraft`
 *   on its single balance row (`ledger_balances_single_slot_if_must_not_overdraw`), and
 *   `ledger_accounts_players_never_overdraw` that every player account carries that flag.
 * - Every transfer debits one account and credits another of the same currency, for a positive amount:
 *   FOREIGN KEYs `ledger_transfers_debit_account` / `_credit_account` on (id, currency), CHECKs
 *   `ledger_transfers_distinct_accounts` and `ledger_transfers_amount_safe_positive`.
 * - Balances are the sum of the transfers: only the AFTER INSERT trigger `ledger_transfers_apply` writes them.
 * - History is never rewritten: triggers `ledger_transfers_append_only`, `ledger_transfers_no_truncate` and
 *   `ledger_accounts_immutable`.
 * - Totals cannot overflow: balance columns are numeric(39,0) (migrations/0012_ledger_wide_totals.sql) and
 *   each transfer is a safe integer.
 * - Each transfer has exactly one outbox event, written in the transfer's own transaction (outbox-events.ts):
 *   UNIQUE `outbox_events_transfer_unique` (migrations/0005_outbox.sql).
 */
export { createLedger, type Ledger, type LedgerOptions } from './ledger';
export { checkInvariants, INVARIANT_RULES, type InvariantReport, type InvariantViolation } from './invariants';
export { CURRENCY_CODES, currencyExponent, formatMinorUnits, isKnownCurrency, isValidMinorAmount, toMinorUnits } from './currency';
export {
  buildOutboxEvent,
  outboxEventIdOf,
  eventTypeOf,
  OUTBOX_EVENT_TYPES,
  OUTBOX_SCHEMA_VERSION,
  type OutboxEventPayload,
  type OutboxEventType,
} from './outbox-events';
export * from './types';
