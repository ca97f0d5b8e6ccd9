-- Up Migration

-- Where each payout goes, in full. Kept here and read by the submission activity, so IBANs and card
-- tokens never enter Temporal's workflow histories (which staff browse and engineers export).
CREATE TABLE payout_destinations (
  payout_id   text        PRIMARY KEY,
  method      text        NOT NULL CHECK (method IN ('bank_transfer', 'card', 'ewallet')),
  destination jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE payout_destinations;
