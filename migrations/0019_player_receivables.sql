-- Up Migration

-- A player's debt after a chargeback the balance could not cover: one receivable account per player
-- (`system:receivable:<player id>`, kind player_receivable), debited for the shortfall and credited as later
-- deposits repay it. It may go below zero (that is the debt); the player's own account never does.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_known;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_known CHECK (kind IN
  ('player', 'provider_clearing', 'payouts_in_flight', 'deposits_in_flight', 'fees', 'operator_funding', 'player_receivable'));

-- A deposit the provider reversed (charged back) after it was credited.
ALTER TABLE deposits ADD COLUMN reversed_at timestamptz;
ALTER TABLE deposits ADD COLUMN reversal_reason text;

-- Down Migration
ALTER TABLE deposits DROP COLUMN reversal_reason;
ALTER TABLE deposits DROP COLUMN reversed_at;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_known;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_known CHECK (kind IN
  ('player', 'provider_clearing', 'payouts_in_flight', 'deposits_in_flight', 'fees', 'operator_funding'));
