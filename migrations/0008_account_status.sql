-- Up Migration

-- Whether an account may pay out. Not ledger data (ledger accounts are immutable): finance staff freeze
-- and unfreeze accounts here, and each change is also written to staff_audit_log.
CREATE TABLE account_status (
  account_id  text        PRIMARY KEY,
  status      text        NOT NULL CHECK (status IN ('active', 'frozen')),
  reason      text        NOT NULL,
  changed_by  text        NOT NULL,
  changed_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE account_status;
