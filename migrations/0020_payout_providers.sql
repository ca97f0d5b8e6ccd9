-- Up Migration

-- Several providers: where a payout is now (payouts.provider, updated at each failover) under which reference,
-- and every provider it was submitted to, in order. A later attempt is made only once the provider of the
-- one before it said it has no such payout, or failed it (the saga checks); reconciliation holds each
-- provider's records against these rows.
ALTER TABLE payouts ADD COLUMN provider_reference text;

CREATE TABLE payout_attempts (
  payout_id   text        NOT NULL,
  attempt     integer     NOT NULL CHECK (attempt >= 1),
  provider    text        NOT NULL,
  -- The provider idempotency key and reference of this attempt: the payout id for the first, then `<payout id>:a<n>`.
  reference   text        NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  -- Why the saga moved on from this attempt (the provider's answer and its record); null while it is current.
  superseded  text,
  PRIMARY KEY (payout_id, attempt),
  UNIQUE (provider, reference)
);

-- Staff switch a provider off for new payouts (audited in staff_audit_log); absent means enabled.
CREATE TABLE provider_controls (
  provider    text        PRIMARY KEY,
  enabled     boolean     NOT NULL,
  reason      text        NOT NULL,
  actor       text        NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Each provider is reconciled against its own report: a finding names the provider it is about.
ALTER TABLE reconciliation_mismatches ADD COLUMN provider text;
ALTER TABLE reconciliation_runs ADD COLUMN by_provider jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Down Migration
ALTER TABLE reconciliation_runs DROP COLUMN by_provider;
ALTER TABLE reconciliation_mismatches DROP COLUMN provider;
DROP TABLE provider_controls;
DROP TABLE payout_attempts;
ALTER TABLE payouts DROP COLUMN provider_reference;
