-- Up Migration

-- Four eyes on manual money actions: one staff member requests (resolve a payout, release a freeze, ...),
-- a different one approves or rejects before it takes effect. Requests are kept; the audit log has each step.
CREATE TABLE approval_requests (
  id                bigserial   PRIMARY KEY,
  action            text        NOT NULL,
  target            text        NOT NULL,
  payload           jsonb       NOT NULL,
  reason            text        NOT NULL,
  requested_by      text        NOT NULL,
  requested_at      timestamptz NOT NULL DEFAULT now(),
  -- pending → approving (claimed by one approver, applying) → approved | failed (the action was refused); or rejected
  status            text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approving', 'approved', 'rejected', 'failed')),
  decided_by        text,
  decided_at        timestamptz,
  decision_reason   text,
  outcome_detail    text,
  CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
-- One open request per action and target: a second one would be decided twice.
CREATE UNIQUE INDEX approval_requests_one_open ON approval_requests (action, target) WHERE status IN ('pending', 'approving');
CREATE INDEX approval_requests_open ON approval_requests (requested_at) WHERE status IN ('pending', 'approving');

ALTER TABLE staff_audit_log DROP CONSTRAINT staff_audit_log_outcome_check;
ALTER TABLE staff_audit_log ADD CONSTRAINT staff_audit_log_outcome_check CHECK (outcome IN ('applied', 'refused', 'error', 'requested', 'rejected'));

-- Down Migration
ALTER TABLE staff_audit_log DROP CONSTRAINT staff_audit_log_outcome_check;
ALTER TABLE staff_audit_log ADD CONSTRAINT staff_audit_log_outcome_check CHECK (outcome IN ('applied', 'refused', 'error'));
DROP TABLE approval_requests;
