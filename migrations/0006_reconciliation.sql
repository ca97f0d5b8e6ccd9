-- Up Migration

-- Reconciliation: each run compares the provider's settlement report for its window with the ledger and
-- runs the ledger invariant checker. Append-only: a run is written once, when it has finished; every later
-- run restates the mismatches still open, so history is never edited.

CREATE TABLE reconciliation_runs (
  -- `<workflow id>/<run id>`: a retried activity finds its run already recorded.
  run_id               text        PRIMARY KEY,
  workflow_id          text        NOT NULL,
  -- Covered window [since, until): `until` is the action time minus the grace period.
  window_since         timestamptz NOT NULL,
  window_until         timestamptz NOT NULL,
  action_time          timestamptz NOT NULL,
  grace_seconds        integer     NOT NULL CHECK (grace_seconds >= 0),
  -- NULL for a full run (the schedule's); the reference list of a scoped (diagnostic, test) run.
  scope                jsonb       CHECK (scope IS NULL OR jsonb_typeof(scope) = 'array'),
  started_at           timestamptz NOT NULL,
  finished_at          timestamptz NOT NULL DEFAULT now(),
  status               text        NOT NULL CHECK (status IN ('clean', 'mismatches')),
  invariant_violations jsonb       NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(invariant_violations) = 'array'),
  provider_items       integer     NOT NULL CHECK (provider_items >= 0),
  ledger_movements     integer     NOT NULL CHECK (ledger_movements >= 0),
  looked_up            integer     NOT NULL CHECK (looked_up >= 0),
  carried_over         integer     NOT NULL CHECK (carried_over >= 0),
  mismatches           integer     NOT NULL CHECK (mismatches >= 0),
  CHECK (window_since <= window_until),
  CHECK ((status = 'clean') = (mismatches = 0))
);
CREATE INDEX reconciliation_runs_finished ON reconciliation_runs (finished_at DESC, run_id DESC);
CREATE INDEX reconciliation_runs_full_until ON reconciliation_runs (window_until DESC) WHERE scope IS NULL;

-- No foreign key to the run: settlement mismatches are written while the run is in progress (the run row
-- comes last, so "finished" means "has a run row").
CREATE TABLE reconciliation_mismatches (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id        text        NOT NULL,
  kind          text        NOT NULL CHECK (kind IN ('missing_in_ledger', 'missing_at_provider', 'amount_mismatch', 'status_mismatch', 'ledger_invariant')),
  -- 'payout' | 'deposit'; NULL for ledger_invariant.
  item_kind     text        CHECK (item_kind IN ('payout', 'deposit')),
  -- The payout/deposit id (the provider's `reference`); the rule name for ledger_invariant.
  reference     text        NOT NULL,
  provider_item jsonb,
  ledger_facts  jsonb       NOT NULL DEFAULT '[]'::jsonb,
  detail        text        NOT NULL,
  recorded_at   timestamptz NOT NULL DEFAULT now(),
  CHECK ((kind = 'ledger_invariant') = (item_kind IS NULL))
);
-- One finding of a kind per reference and run: a retried comparison adds nothing.
CREATE UNIQUE INDEX reconciliation_mismatches_once ON reconciliation_mismatches (run_id, kind, reference) WHERE kind <> 'ledger_invariant';
CREATE INDEX reconciliation_mismatches_run ON reconciliation_mismatches (run_id, id);
CREATE INDEX reconciliation_mismatches_reference ON reconciliation_mismatches (reference);

CREATE FUNCTION reconciliation_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'reconciliation: % is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER reconciliation_runs_append_only BEFORE UPDATE OR DELETE ON reconciliation_runs FOR EACH ROW EXECUTE FUNCTION reconciliation_refuse_change();
CREATE TRIGGER reconciliation_runs_no_truncate BEFORE TRUNCATE ON reconciliation_runs FOR EACH STATEMENT EXECUTE FUNCTION reconciliation_refuse_change();
CREATE TRIGGER reconciliation_mismatches_append_only BEFORE UPDATE OR DELETE ON reconciliation_mismatches FOR EACH ROW EXECUTE FUNCTION reconciliation_refuse_change();
CREATE TRIGGER reconciliation_mismatches_no_truncate BEFORE TRUNCATE ON reconciliation_mismatches FOR EACH STATEMENT EXECUTE FUNCTION reconciliation_refuse_change();

-- Reconciliation reads the ledger by saga reference and by time; without these it would scan every transfer.
CREATE INDEX ledger_transfers_payout_ref ON ledger_transfers ((metadata->>'payout_id')) WHERE metadata ? 'payout_id';
CREATE INDEX ledger_transfers_deposit_ref ON ledger_transfers ((metadata->>'deposit_id')) WHERE metadata ? 'deposit_id';
CREATE INDEX ledger_transfers_created ON ledger_transfers (created_at);

-- Down Migration
DROP INDEX ledger_transfers_created;
DROP INDEX ledger_transfers_deposit_ref;
DROP INDEX ledger_transfers_payout_ref;
DROP TABLE reconciliation_mismatches;
DROP TABLE reconciliation_runs;
DROP FUNCTION reconciliation_refuse_change();
