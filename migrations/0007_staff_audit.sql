-- Up Migration

-- Every staff action on a saga: who, when, what, why, and how it ended. Append-only.
CREATE TABLE staff_audit_log (
  id          bigserial   PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text        NOT NULL,
  action      text        NOT NULL,
  target      text        NOT NULL,
  reason      text        NOT NULL,
  request     jsonb       NOT NULL DEFAULT '{}'::jsonb,
  outcome     text        NOT NULL CHECK (outcome IN ('applied', 'refused', 'error')),
  detail      text
);
CREATE INDEX staff_audit_log_target ON staff_audit_log (target, at);

CREATE FUNCTION staff_audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'staff_audit_log is append-only';
END;
$$;
CREATE TRIGGER staff_audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON staff_audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION staff_audit_log_is_append_only();

-- Down Migration
DROP TABLE staff_audit_log;
DROP FUNCTION staff_audit_log_is_append_only();
