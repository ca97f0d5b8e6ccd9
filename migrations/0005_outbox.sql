-- Up Migration

-- Transactional outbox. Every new ledger transfer writes one event row in its own transaction
-- (activities/ledger/outbox-events.ts); the publisher (apps/outbox-publisher) delivers the events to each
-- operator endpoint as signed webhooks, in order per account, at least once. Consumers dedupe by event_id.

-- Append-only. `id` is the global order; per account (the ordering key) it is also commit order, because
-- the writer takes a per-account advisory lock before inserting (see outbox-events.ts).
CREATE TABLE outbox_events (
  id              bigserial   PRIMARY KEY,
  event_id        uuid        NOT NULL CONSTRAINT outbox_events_event_id_unique UNIQUE,
  event_type      text        NOT NULL,
  schema_version  integer     NOT NULL CHECK (schema_version > 0),
  -- The player account the event is about (for a transfer between two system accounts: the debit account).
  account_id      text        NOT NULL,
  -- The ledger command's key: one command, one event.
  idempotency_key text        NOT NULL CONSTRAINT outbox_events_idempotency_key_unique UNIQUE,
  -- No foreign key: it would change how the ledger refuses a TRUNCATE (its triggers give the reason). The
  -- transfer is append-only and written in the same transaction; the invariant checker verifies the link.
  transfer_id     bigint      NOT NULL CONSTRAINT outbox_events_transfer_unique UNIQUE,
  -- The exact webhook body (jsonb::text is deterministic, so a redelivery sends the same bytes).
  payload         jsonb       NOT NULL CHECK (jsonb_typeof(payload) = 'object' AND payload ->> 'event_id' = event_id::text),
  -- Writing transaction. The publisher's fan-out rescans from the oldest transaction still running at its
  -- previous scan, so an event committed late with a lower id is never skipped.
  tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_events_tx_id ON outbox_events (tx_id);
CREATE INDEX outbox_events_account ON outbox_events (account_id, id);

-- Transfers written before the outbox existed have no event; the invariant checker starts after them.
CREATE TABLE outbox_origin (
  singleton               boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_transfer_id_before bigint  NOT NULL
);
INSERT INTO outbox_origin (last_transfer_id_before) SELECT coalesce(max(id), 0) FROM ledger_transfers;

-- One row per endpoint a publisher has served. Every event written by a transaction older than
-- scanned_before (an xid) already has its outbox_deliveries row for this endpoint. A new endpoint starts
-- at 0: it receives every event kept in the outbox.
CREATE TABLE outbox_endpoints (
  endpoint       text        PRIMARY KEY,
  scanned_before xid8        NOT NULL DEFAULT '0',
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Delivery state of one event to one endpoint. Open (neither delivered nor dead) rows of an account are
-- delivered strictly one after another in event order: only the lowest open row of an account (its head)
-- can be claimed, so a retrying event blocks the account's later events until it is delivered or dead.
CREATE TABLE outbox_deliveries (
  endpoint        text        NOT NULL REFERENCES outbox_endpoints (endpoint),
  event_seq       bigint      NOT NULL REFERENCES outbox_events (id),
  account_id      text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- In-flight claim: the publisher's owner id (a session advisory lock it holds while alive) and when.
  claimed_by      integer,
  claimed_at      timestamptz,
  delivered_at    timestamptz,
  dead_at         timestamptz,
  last_error      text,
  PRIMARY KEY (endpoint, event_seq),
  CHECK (delivered_at IS NULL OR dead_at IS NULL),
  CHECK ((claimed_by IS NULL) = (claimed_at IS NULL))
);
CREATE INDEX outbox_deliveries_open ON outbox_deliveries (endpoint, account_id, event_seq) WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Events an endpoint refused (or could not be reached for) OUTBOX_MAX_ATTEMPTS times. Rows are kept;
-- a replay (scripts/outbox-replay.ts) sets replayed_at and reopens the delivery.
CREATE TABLE outbox_dead_letters (
  id          bigserial   PRIMARY KEY,
  event_seq   bigint      NOT NULL REFERENCES outbox_events (id),
  event_id    uuid        NOT NULL,
  endpoint    text        NOT NULL,
  attempts    integer     NOT NULL,
  last_error  text,
  dead_at     timestamptz NOT NULL DEFAULT now(),
  replayed_at timestamptz
);
CREATE UNIQUE INDEX outbox_dead_letters_open ON outbox_dead_letters (endpoint, event_seq) WHERE replayed_at IS NULL;
CREATE INDEX outbox_dead_letters_event ON outbox_dead_letters (event_id);

CREATE FUNCTION outbox_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'outbox: % is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER outbox_events_append_only BEFORE UPDATE OR DELETE ON outbox_events FOR EACH ROW EXECUTE FUNCTION outbox_refuse_change();
CREATE TRIGGER outbox_events_no_truncate BEFORE TRUNCATE ON outbox_events FOR EACH STATEMENT EXECUTE FUNCTION outbox_refuse_change();

-- Down Migration
DROP TABLE outbox_dead_letters;
DROP TABLE outbox_deliveries;
DROP TABLE outbox_endpoints;
DROP TABLE outbox_origin;
DROP TABLE outbox_events;
DROP FUNCTION outbox_refuse_change();
