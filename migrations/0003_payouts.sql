-- Up Migration

-- The first answer to each (account, Idempotency-Key), kept forever: a repeat with the same request
-- gets it back byte for byte; a repeat with another request (other fingerprint) is refused.
CREATE TABLE idempotency_records (
  account_id      text        NOT NULL,
  idempotency_key text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  operation       text        NOT NULL CHECK (operation IN ('payout', 'deposit')),
  fingerprint     text        NOT NULL,
  resource_id     text        NOT NULL,
  response_status integer     CHECK (response_status BETWEEN 200 AND 599),
  -- The exact bytes sent the first time (text, not jsonb, which would reorder keys).
  response_body   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  completed_at    timestamptz,
  PRIMARY KEY (account_id, idempotency_key),
  CHECK ((response_status IS NULL) = (response_body IS NULL))
);
CREATE UNIQUE INDEX idempotency_records_resource ON idempotency_records (resource_id);

-- Read model of payout sagas, written only by the saga's activities (the workflow is the source of
-- truth): authorization limits, staff lists and reconciliation read it.
CREATE TABLE payouts (
  payout_id          text        PRIMARY KEY,
  account_id         text        NOT NULL,
  amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
  currency           text        NOT NULL,
  destination_method text        NOT NULL,
  destination_last4  text        NOT NULL,
  provider           text        NOT NULL,
  status             text        NOT NULL,
  provider_payout_id text,
  decline_code       text,
  failure_code       text,
  stuck              boolean     NOT NULL DEFAULT false,
  -- Saga step counter: an out-of-date write (an activity retried late) never overwrites a newer one.
  version            integer     NOT NULL DEFAULT 0,
  requested_at       timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_account_requested ON payouts (account_id, requested_at);
CREATE INDEX payouts_status ON payouts (status);

-- Provider callbacks, stored (unique per provider event id) before they are acknowledged.
CREATE TABLE webhook_events (
  provider      text        NOT NULL,
  event_id      text        NOT NULL,
  event_type    text        NOT NULL,
  reference     text        NOT NULL,
  payload       jsonb       NOT NULL,
  received_at   timestamptz NOT NULL DEFAULT now(),
  signalled_at  timestamptz,
  PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_events_reference ON webhook_events (reference);

-- Down Migration
DROP TABLE webhook_events;
DROP TABLE payouts;
DROP TABLE idempotency_records;
