-- Up Migration

-- A provider claim that disagrees with the provider's own record, or a record that disagrees with what
-- the platform asked for (amount, currency, destination). Never acted on: written here for staff (and the
-- `provider_incidents_open` gauge) while the saga waits, stuck, for a record that agrees or for staff.
-- Append-only; one row per saga, kind and observed difference (a retried activity writes nothing new).
CREATE TABLE provider_incidents (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  saga_kind    text        NOT NULL CHECK (saga_kind IN ('payout', 'deposit')),
  reference    text        NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('record_mismatch', 'claim_not_confirmed', 'claim_contradicted')),
  -- Which fields differ ('status', 'amount', 'currency', 'destination') and what each side said.
  fields       text[]      NOT NULL,
  expected     jsonb       NOT NULL,
  observed     jsonb       NOT NULL,
  -- The webhook event whose claim was checked, when there was one.
  event_id     text,
  fingerprint  text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (reference, fingerprint)
);
CREATE INDEX provider_incidents_created ON provider_incidents (created_at DESC);

-- An event id is handled once whatever its type; deliveries of the same id with another body are refused
-- and counted here (and in webhook_event_conflicts_total).
ALTER TABLE webhook_events ADD COLUMN conflicting_deliveries integer NOT NULL DEFAULT 0;

-- Down Migration
ALTER TABLE webhook_events DROP COLUMN conflicting_deliveries;
DROP TABLE provider_incidents;
