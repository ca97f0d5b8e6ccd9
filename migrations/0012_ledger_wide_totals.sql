-- Up Migration

-- Account totals as TigerBeetle keeps them: a transfer's amount stays a safe integer (at most
-- 2^53 - 1 minor units, exact in JavaScript), but the running debit and credit totals of an account
-- are numeric(39,0) (u128-like), so a system account that every deposit or payout goes through
-- cannot overflow in any operator's lifetime (10^39 minor units: a million transfers of 2^53 a
-- second would take three billion years). Before, they were capped at 2^53 - 1, and a single
-- deposit of that size made every later deposit in the currency fail with OVERFLOWS_DEBITS.
ALTER TABLE ledger_balances
  DROP CONSTRAINT ledger_balances_debits_safe_integer,
  DROP CONSTRAINT ledger_balances_credits_safe_integer,
  ALTER COLUMN debits_pending  TYPE numeric(39, 0),
  ALTER COLUMN debits_posted   TYPE numeric(39, 0),
  ALTER COLUMN credits_pending TYPE numeric(39, 0),
  ALTER COLUMN credits_posted  TYPE numeric(39, 0);

-- What the API shows of an account that must not overdraw (a player's available, held and posted
-- balance) stays exact as a JavaScript number: its balance, pending credits included, never exceeds
-- 2^53 - 1 (its totals may, over a long life). One slot holds its whole balance, so the CHECK sees it.
ALTER TABLE ledger_balances
  ADD CONSTRAINT ledger_balances_exact_if_must_not_overdraw
    CHECK (NOT debits_must_not_exceed_credits OR credits_posted + credits_pending - debits_posted <= 9007199254740991);

-- Down Migration
ALTER TABLE ledger_balances DROP CONSTRAINT ledger_balances_exact_if_must_not_overdraw;
ALTER TABLE ledger_balances
  ALTER COLUMN debits_pending  TYPE bigint,
  ALTER COLUMN debits_posted   TYPE bigint,
  ALTER COLUMN credits_pending TYPE bigint,
  ALTER COLUMN credits_posted  TYPE bigint,
  ADD CONSTRAINT ledger_balances_debits_safe_integer CHECK (debits_pending + debits_posted <= 9007199254740991),
  ADD CONSTRAINT ledger_balances_credits_safe_integer CHECK (credits_pending + credits_posted <= 9007199254740991);
