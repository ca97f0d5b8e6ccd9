-- Up Migration

-- Read model of deposit sagas, written only by the saga's activities (the workflow is the source of
-- truth): the webhook handler tells a closed saga from an unknown reference with it, and staff lists
-- and reconciliation read it.
CREATE TABLE deposits (
  deposit_id          text        PRIMARY KEY,
  account_id          text        NOT NULL,
  amount_minor        bigint      NOT NULL CHECK (amount_minor > 0),
  currency            text        NOT NULL,
  provider            text        NOT NULL,
  status              text        NOT NULL,
  checkout_url        text,
  provider_deposit_id text,
  failure_code        text,
  credit_transfer_id  bigint,
  stuck               boolean     NOT NULL DEFAULT false,
  -- Saga step counter: an out-of-date write (an activity retried late) never overwrites a newer one.
  version             integer     NOT NULL,
  requested_at        timestamptz NOT NULL,
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deposits_account_requested ON deposits (account_id, requested_at);
CREATE INDEX deposits_status ON deposits (status);

-- Down Migration
DROP TABLE deposits;
