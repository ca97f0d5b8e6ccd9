-- Up Migration

-- End-to-end probe of the stack: the launcher and the tests run a workflow whose activity writes
-- here, proving API-independent wiring of Temporal -> worker -> PostgreSQL.
CREATE TABLE platform_self_checks (
  check_id    text PRIMARY KEY,
  workflow_id text        NOT NULL,
  run_id      text        NOT NULL,
  checked_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE platform_self_checks;
