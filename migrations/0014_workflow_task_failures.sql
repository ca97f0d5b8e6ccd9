-- Up Migration

-- Sagas whose workflow task keeps failing (a nondeterminism error, a bug in workflow code): the saga is
-- stopped and cannot record anything itself, so the worker writes the mark here from outside the workflow
-- (lib/workflow-task-failure-marker.ts) and removes it once a later check finds the saga's task healthy.
-- Keyed by workflow id (a payout_id or deposit_id for the sagas), not a column of `payouts`/`deposits`:
-- a task can fail before the saga's first read-model write, and those rows stay written by the saga alone.
-- `failure` is internal text for staff views only; players never see it.
CREATE TABLE workflow_task_failures (
  workflow_id    text        PRIMARY KEY,
  workflow_type  text        NOT NULL,
  -- The run whose task failed (a reset or continue-as-new starts another run of the same workflow id).
  run_id         text        NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('nondeterminism', 'workflow_error')),
  failure        text        NOT NULL,
  failing_since  timestamptz NOT NULL DEFAULT now(),
  last_failed_at timestamptz NOT NULL DEFAULT now(),
  -- Last check against Temporal (describe), and the pending workflow task's attempt it saw.
  checked_at     timestamptz,
  attempt        integer
);
CREATE INDEX workflow_task_failures_type ON workflow_task_failures (workflow_type, failing_since);

-- Down Migration
DROP TABLE workflow_task_failures;
