-- Up Migration

-- The operator's own fields of a payout or deposit, as given on its POST: `reference` (the operator's id for
-- it) and `metadata` (string keys to string values, validated by the API: apps/api/common/operator-metadata.ts).
-- Written by the API once the Idempotency-Key is claimed and before the saga starts (first write wins: the key's
-- request fingerprint covers both, so every writer of one id writes the same values); a row only when the
-- request carried either. Kept here rather than in the workflow input: metadata may hold personal data, and
-- workflow histories are browsed by staff and exported by engineers. The outbox event of every ledger transfer
-- of the payout or deposit echoes them (ledger/outbox-events.ts).
CREATE TABLE operation_metadata (
  resource_id text        PRIMARY KEY,
  operation   text        NOT NULL CHECK (operation IN ('payout', 'deposit')),
  account_id  text        NOT NULL,
  reference   text        CHECK (char_length(reference) BETWEEN 1 AND 128),
  metadata    jsonb       CHECK (jsonb_typeof(metadata) = 'object'),
  created_at  timestamptz NOT NULL DEFAULT now(),
  -- NULL: not given (answered as absent, as the POST's own answer has it).
  CHECK (reference IS NOT NULL OR metadata IS NOT NULL),
  CHECK (resource_id LIKE CASE operation WHEN 'payout' THEN 'po\_%' ELSE 'dp\_%' END)
);

-- Keyset pagination, newest first, over (requested_at, id): a player's history (GET /v1/accounts/{id}/payouts
-- and /deposits) and the staff list of payouts by status (GET /v1/ops/payouts from the read model). They
-- replace the indexes on (account_id, requested_at) and (status), which they cover as prefixes.
CREATE INDEX payouts_account_requested_id ON payouts (account_id, requested_at, payout_id);
CREATE INDEX payouts_status_requested_id ON payouts (status, requested_at, payout_id);
CREATE INDEX deposits_account_requested_id ON deposits (account_id, requested_at, deposit_id);
DROP INDEX payouts_account_requested;
DROP INDEX payouts_status;
DROP INDEX deposits_account_requested;

-- The account statement reads ledger_transfers by (debit_account_id, id) and (credit_account_id, id), which
-- 0002 indexes already, and a post's hold by primary key: no ledger index is added.

-- Down Migration
CREATE INDEX deposits_account_requested ON deposits (account_id, requested_at);
CREATE INDEX payouts_status ON payouts (status);
CREATE INDEX payouts_account_requested ON payouts (account_id, requested_at);
DROP INDEX deposits_account_requested_id;
DROP INDEX payouts_status_requested_id;
DROP INDEX payouts_account_requested_id;
DROP TABLE operation_metadata;
