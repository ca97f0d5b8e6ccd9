-- Up Migration

-- The deposit saga's limit decision (per deposit, per day, balance ceiling), one per deposit, written
-- under the account's advisory lock so concurrent deposits of one account cannot pass the limits
-- together. Approved deposits count against the daily limit and, until credited, the balance ceiling.
CREATE TABLE deposit_authorizations (
  deposit_id     text        PRIMARY KEY,
  account_id     text        NOT NULL,
  amount_minor   bigint      NOT NULL CHECK (amount_minor > 0),
  currency       text        NOT NULL,
  approved       boolean     NOT NULL,
  decline_code   text,
  decline_detail text,
  requested_at   timestamptz NOT NULL,
  decided_at     timestamptz NOT NULL DEFAULT now(),
  CHECK (approved = (decline_code IS NULL))
);
CREATE INDEX deposit_authorizations_account_approved ON deposit_authorizations (account_id, requested_at) WHERE approved;

-- Down Migration
DROP TABLE deposit_authorizations;
