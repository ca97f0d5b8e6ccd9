/**
 * The double-entry ledger: the only code that moves money. Used by activities (commands) and by the
 * API's read paths (getBalance, getAccount, getTransfer). See ledger.ts for the concurrency design and
 * migrations/0002_ledger.sql for what the database enforces on its own.
 */
export { createLedger, type Ledger, type LedgerOptions } from './ledger';
export { checkInvariants, INVARIANT_RULES, type InvariantReport, type InvariantViolation } from './invariants';
export { CURRENCY_CODES, currencyExponent, formatMinorUnits, isKnownCurrency, isValidMinorAmount, toMinorUnits } from './currency';
export {
  buildOutboxEvent,
  eventTypeOf,
  OUTBOX_EVENT_TYPES,
  OUTBOX_SCHEMA_VERSION,
  type OutboxEventPayload,
  type OutboxEventType,
} from './outbox-events';
export * from './types';
