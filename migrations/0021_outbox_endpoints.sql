-- Up Migration

-- Outbox endpoints as data (apps/outbox-publisher/endpoints.ts): each has an id, a URL, its own signing
-- secret (Standard Webhooks, rotatable: the previous one keeps signing until previous_until), an event type
-- filter and an enabled switch. OUTBOX_ENDPOINTS applies its entries at a publisher's start; staff change
-- them through /v1/ops/outbox/endpoints (audited). Every publisher serves every enabled endpoint.
--
-- `endpoint` stays the key deliveries and dead letters refer to: for an endpoint created from now on it is
-- its id; an endpoint served before keeps its URL there (no delivery row is rewritten) and gets the id a
-- bare URL of OUTBOX_ENDPOINTS is given (`url-` + 12 hex of its SHA-256), disabled until a publisher's
-- OUTBOX_ENDPOINTS names it again (it has no secret in the database before that).
ALTER TABLE outbox_endpoints
  ADD COLUMN name                 text,
  ADD COLUMN url                  text,
  ADD COLUMN enabled              boolean     NOT NULL DEFAULT true,
  -- Empty: every event type. Otherwise types (deposit.credited) or families (payout.*); applied at fan-out.
  ADD COLUMN event_types          text[]      NOT NULL DEFAULT '{}',
  ADD COLUMN source               text        NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api')),
  -- SHA-256 of the OUTBOX_ENDPOINTS entry last applied: an unchanged entry leaves staff changes alone.
  ADD COLUMN config_digest        text,
  -- Secrets sealed with AES-256-GCM under a DESTINATION_KEYS key (its id alongside), bound to `endpoint`.
  ADD COLUMN secret_key_id        text,
  ADD COLUMN secret_sealed        bytea,
  ADD COLUMN secret_fingerprint   text,
  ADD COLUMN previous_key_id      text,
  ADD COLUMN previous_sealed      bytea,
  ADD COLUMN previous_fingerprint text,
  ADD COLUMN previous_until       timestamptz,
  ADD COLUMN secret_rotated_at    timestamptz,
  ADD COLUMN changed_by           text,
  ADD COLUMN change_reason        text;

UPDATE outbox_endpoints
   SET name = 'url-' || left(encode(sha256(convert_to(endpoint, 'UTF8')), 'hex'), 12), url = endpoint, enabled = false, source = 'config';

ALTER TABLE outbox_endpoints
  ALTER COLUMN name SET NOT NULL,
  ALTER COLUMN url SET NOT NULL,
  ADD CONSTRAINT outbox_endpoints_name_unique UNIQUE (name),
  ADD CONSTRAINT outbox_endpoints_secret_whole CHECK ((secret_sealed IS NULL) = (secret_key_id IS NULL) AND (secret_sealed IS NULL) = (secret_fingerprint IS NULL)),
  ADD CONSTRAINT outbox_endpoints_previous_whole CHECK ((previous_sealed IS NULL) = (previous_key_id IS NULL) AND (previous_sealed IS NULL) = (previous_until IS NULL) AND (previous_sealed IS NULL) = (previous_fingerprint IS NULL)),
  ADD CONSTRAINT outbox_endpoints_enabled_signs CHECK (NOT enabled OR secret_sealed IS NOT NULL);

-- An endpoint's event type filter as the fan-out applies it (lib/outbox-webhooks.ts matchesEventTypes is the same rule).
CREATE FUNCTION outbox_event_type_matches(patterns text[], event_type text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT cardinality(patterns) = 0
      OR EXISTS (SELECT 1 FROM unnest(patterns) AS p
                  WHERE p = '*' OR p = event_type OR (right(p, 2) = '.*' AND starts_with(event_type, left(p, -1))))
$$;

-- Retries run for a window (OUTBOX_RETRY_WINDOW) from an event's first failure, not a number of attempts.
-- A dead delivery now keeps its account's later events waiting (order kept) until staff replay it (it is
-- reopened) or skip it (skipped_at: closed, the next event goes). Settled: delivered or skipped.
ALTER TABLE outbox_deliveries
  ADD COLUMN first_failed_at timestamptz,
  ADD COLUMN skipped_at      timestamptz,
  ADD CONSTRAINT outbox_deliveries_skipped_dead CHECK (skipped_at IS NULL OR (dead_at IS NOT NULL AND delivered_at IS NULL));
CREATE INDEX outbox_deliveries_unsettled ON outbox_deliveries (endpoint, account_id, event_seq) WHERE delivered_at IS NULL AND skipped_at IS NULL;
DROP INDEX outbox_deliveries_open;

-- Who resolved a dead letter, and why: a replay (replayed_at) or a skip (skipped_at), never both.
ALTER TABLE outbox_dead_letters
  ADD COLUMN first_failed_at   timestamptz,
  ADD COLUMN skipped_at        timestamptz,
  ADD COLUMN resolved_by       text,
  ADD COLUMN resolution_reason text,
  ADD CONSTRAINT outbox_dead_letters_one_resolution CHECK (replayed_at IS NULL OR skipped_at IS NULL);
CREATE INDEX outbox_dead_letters_unresolved ON outbox_dead_letters (endpoint, event_seq) WHERE replayed_at IS NULL AND skipped_at IS NULL;

-- Down Migration
DROP FUNCTION outbox_event_type_matches(text[], text);
DROP INDEX outbox_dead_letters_unresolved;
ALTER TABLE outbox_dead_letters DROP CONSTRAINT outbox_dead_letters_one_resolution,
  DROP COLUMN resolution_reason, DROP COLUMN resolved_by, DROP COLUMN skipped_at, DROP COLUMN first_failed_at;
CREATE INDEX outbox_deliveries_open ON outbox_deliveries (endpoint, account_id, event_seq) WHERE delivered_at IS NULL AND dead_at IS NULL;
DROP INDEX outbox_deliveries_unsettled;
ALTER TABLE outbox_deliveries DROP CONSTRAINT outbox_deliveries_skipped_dead, DROP COLUMN skipped_at, DROP COLUMN first_failed_at;
ALTER TABLE outbox_endpoints
  DROP CONSTRAINT outbox_endpoints_enabled_signs, DROP CONSTRAINT outbox_endpoints_previous_whole, DROP CONSTRAINT outbox_endpoints_secret_whole,
  DROP CONSTRAINT outbox_endpoints_name_unique,
  DROP COLUMN change_reason, DROP COLUMN changed_by, DROP COLUMN secret_rotated_at, DROP COLUMN previous_until, DROP COLUMN previous_fingerprint,
  DROP COLUMN previous_sealed, DROP COLUMN previous_key_id, DROP COLUMN secret_fingerprint, DROP COLUMN secret_sealed, DROP COLUMN secret_key_id,
  DROP COLUMN config_digest, DROP COLUMN source, DROP COLUMN event_types, DROP COLUMN enabled, DROP COLUMN url, DROP COLUMN name;
