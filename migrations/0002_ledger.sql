-- Up Migration

-- Double-entry ledger after TigerBeetle: accounts, append-only transfers (pending/post/void), and
-- per-account balances that only the transfer trigger may move. The database itself refuses what it
-- can check alone (overdrafts, unsafe integers, currency mismatches, edits, double resolution), so even
-- a bug in the application cannot commit a broken ledger. activities/ledger is the only writer.

-- Accounts are immutable once created. Ids: 1-128 chars of [A-Za-z0-9._:-] (player ids from the API;
-- system accounts are `system:<kind>:<currency>`).
CREATE TABLE ledger_accounts (
  id                             text        PRIMARY KEY,
  currency                       text        NOT NULL,
  kind                           text        NOT NULL,
  -- TigerBeetle's debits_must_not_exceed_credits: available balance may never go below zero.
  debits_must_not_exceed_credits boolean     NOT NULL,
  created_at                     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT ledger_accounts_id_format CHECK (id ~ '^[A-Za-z0-9._:-]{1,128}$'),
  CONSTRAINT ledger_accounts_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
  CONSTRAINT ledger_accounts_kind_known CHECK (kind IN
    ('player', 'provider_clearing', 'payouts_in_flight', 'deposits_in_flight', 'fees', 'operator_funding')),
  CONSTRAINT ledger_accounts_players_never_overdraw CHECK (kind <> 'player' OR debits_must_not_exceed_credits),
  -- Targets for composite foreign keys, so balances and transfers cannot disagree with their account.
  CONSTRAINT ledger_accounts_id_currency UNIQUE (id, currency),
  CONSTRAINT ledger_accounts_id_currency_flag UNIQUE (id, currency, debits_must_not_exceed_credits)
);

-- Balances, written in the same transaction as every transfer that touches them. An account that must
-- not overdraw has one row (slot 0), so the CHECK below covers its whole balance. Any other account (the
-- system accounts every payout goes through) has ledger_balance_slots() rows and a transfer updates slot
-- (transfer id mod slots; a post or void its hold's slot): concurrent transfers then do not queue on one
-- hot row lock until COMMIT. Its balance is the sum of its slots.
CREATE FUNCTION ledger_balance_slots() RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 16::smallint';

CREATE TABLE ledger_balances (
  account_id                     text        NOT NULL,
  slot                           smallint    NOT NULL,
  currency                       text        NOT NULL,
  debits_must_not_exceed_credits boolean     NOT NULL,
  debits_pending                 bigint      NOT NULL DEFAULT 0,
  debits_posted                  bigint      NOT NULL DEFAULT 0,
  credits_pending                bigint      NOT NULL DEFAULT 0,
  credits_posted                 bigint      NOT NULL DEFAULT 0,
  updated_at                     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, slot),
  CONSTRAINT ledger_balances_account FOREIGN KEY (account_id, currency, debits_must_not_exceed_credits)
    REFERENCES ledger_accounts (id, currency, debits_must_not_exceed_credits),
  CONSTRAINT ledger_balances_slot_range CHECK (slot >= 0 AND slot < ledger_balance_slots()),
  CONSTRAINT ledger_balances_single_slot_if_must_not_overdraw CHECK (NOT debits_must_not_exceed_credits OR slot = 0),
  CONSTRAINT ledger_balances_non_negative CHECK (debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0),
  -- Keeps every balance figure exact as a JavaScript number.
  CONSTRAINT ledger_balances_debits_safe_integer CHECK (debits_pending + debits_posted <= 9007199254740991),
  CONSTRAINT ledger_balances_credits_safe_integer CHECK (credits_pending + credits_posted <= 9007199254740991),
  CONSTRAINT ledger_balances_no_overdraft CHECK (NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted)
);

-- Append-only. post/void are new rows naming the hold (pending_id); refund is a new row naming the
-- posted transfer it reverses (refund_of_id). `state` is the state the row was written in: holds are
-- written 'pending' and their current state is derived from the post/void row that names them.
CREATE TABLE ledger_transfers (
  id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Unique forever: one business operation moves money at most once, however late the retry.
  idempotency_key     text        NOT NULL CONSTRAINT ledger_transfers_idempotency_key_unique UNIQUE,
  -- sha256 of the canonical parameters of the command; a repeat with other parameters is refused.
  request_fingerprint text        NOT NULL,
  kind                text        NOT NULL,
  state               text        NOT NULL,
  debit_account_id    text        NOT NULL,
  credit_account_id   text        NOT NULL,
  amount              bigint      NOT NULL,
  currency            text        NOT NULL,
  pending_id          bigint      REFERENCES ledger_transfers (id),
  refund_of_id        bigint      REFERENCES ledger_transfers (id),
  metadata            jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT ledger_transfers_idempotency_key_length CHECK (char_length(idempotency_key) BETWEEN 1 AND 512),
  CONSTRAINT ledger_transfers_fingerprint_format CHECK (request_fingerprint ~ '^[0-9a-f]{64}$'),
  CONSTRAINT ledger_transfers_kind_known CHECK (kind IN ('transfer', 'hold', 'post', 'void', 'refund')),
  CONSTRAINT ledger_transfers_state_of_kind CHECK (state = CASE kind WHEN 'hold' THEN 'pending' WHEN 'void' THEN 'voided' ELSE 'posted' END),
  CONSTRAINT ledger_transfers_amount_safe_positive CHECK (amount > 0 AND amount <= 9007199254740991),
  CONSTRAINT ledger_transfers_distinct_accounts CHECK (debit_account_id <> credit_account_id),
  CONSTRAINT ledger_transfers_pending_id_iff_resolution CHECK ((pending_id IS NOT NULL) = (kind IN ('post', 'void'))),
  CONSTRAINT ledger_transfers_refund_of_iff_refund CHECK ((refund_of_id IS NOT NULL) = (kind = 'refund')),
  CONSTRAINT ledger_transfers_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  -- Both accounts exist and hold the transfer's currency.
  CONSTRAINT ledger_transfers_debit_account FOREIGN KEY (debit_account_id, currency) REFERENCES ledger_accounts (id, currency),
  CONSTRAINT ledger_transfers_credit_account FOREIGN KEY (credit_account_id, currency) REFERENCES ledger_accounts (id, currency)
);

-- A hold is posted or voided exactly once.
CREATE UNIQUE INDEX ledger_transfers_resolved_once ON ledger_transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX ledger_transfers_refund_of ON ledger_transfers (refund_of_id) WHERE refund_of_id IS NOT NULL;
CREATE INDEX ledger_transfers_debit_account_history ON ledger_transfers (debit_account_id, id);
CREATE INDEX ledger_transfers_credit_account_history ON ledger_transfers (credit_account_id, id);

-- The only way balances move: every inserted transfer applies its effect here, in its own transaction.
-- It also re-checks what a post, void or refund must agree with, as a last line behind the application.
CREATE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  target   ledger_transfers;
  refunded numeric;
  touched  int;
  updated  int := 0;
  account  text;
  released bigint := 0;
  posted   bigint := 0;
  pending  bigint := 0;
BEGIN
  IF NEW.kind IN ('post', 'void') THEN
    SELECT * INTO target FROM ledger_transfers WHERE id = NEW.pending_id;
    IF target.kind IS DISTINCT FROM 'hold' THEN
      RAISE EXCEPTION 'ledger: transfer % resolves %, which is not a hold', NEW.id, NEW.pending_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (target.debit_account_id, target.credit_account_id, target.currency) <> (NEW.debit_account_id, NEW.credit_account_id, NEW.currency)
       OR (NEW.kind = 'post' AND NEW.amount > target.amount) OR (NEW.kind = 'void' AND NEW.amount <> target.amount) THEN
      RAISE EXCEPTION 'ledger: transfer % does not match hold %', NEW.id, target.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    released := target.amount;
    posted := CASE WHEN NEW.kind = 'post' THEN NEW.amount ELSE 0 END;
  ELSIF NEW.kind = 'hold' THEN
    pending := NEW.amount;
  ELSE
    posted := NEW.amount;
    IF NEW.kind = 'refund' THEN
      -- Serialises refunds of one transfer (a row lock, not an update: the row stays untouched).
      SELECT * INTO target FROM ledger_transfers WHERE id = NEW.refund_of_id FOR NO KEY UPDATE;
      IF target.kind NOT IN ('transfer', 'post')
         OR (target.debit_account_id, target.credit_account_id) <> (NEW.credit_account_id, NEW.debit_account_id) THEN
        RAISE EXCEPTION 'ledger: refund % does not reverse posted transfer %', NEW.id, NEW.refund_of_id USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      SELECT sum(amount) INTO refunded FROM ledger_transfers WHERE refund_of_id = target.id;
      IF refunded > target.amount THEN
        RAISE EXCEPTION 'ledger: refunds of transfer % exceed its amount', target.id USING ERRCODE = 'check_violation';
      END IF;
    END IF;
  END IF;

  -- Row locks in the ledger's global order: accounts that must not overdraw first (the application has
  -- usually locked them already), then the others, each group by account id.
  FOR account IN
    SELECT b.account_id FROM ledger_balances b
     WHERE b.account_id IN (NEW.debit_account_id, NEW.credit_account_id) AND b.slot = 0
     ORDER BY b.debits_must_not_exceed_credits DESC, b.account_id
  LOOP
    UPDATE ledger_balances SET
      debits_pending  = debits_pending  + CASE WHEN account_id = NEW.debit_account_id  THEN pending - released ELSE 0 END,
      debits_posted   = debits_posted   + CASE WHEN account_id = NEW.debit_account_id  THEN posted ELSE 0 END,
      credits_pending = credits_pending + CASE WHEN account_id = NEW.credit_account_id THEN pending - released ELSE 0 END,
      credits_posted  = credits_posted  + CASE WHEN account_id = NEW.credit_account_id THEN posted ELSE 0 END,
      updated_at = now()
    WHERE account_id = account
      -- A post or void lands in its hold's slot, so every slot's pending figures stay non-negative.
      AND slot = CASE WHEN debits_must_not_exceed_credits THEN 0 ELSE (coalesce(NEW.pending_id, NEW.id) % ledger_balance_slots())::smallint END;
    GET DIAGNOSTICS touched = ROW_COUNT;
    IF touched <> 1 THEN
      RAISE EXCEPTION 'ledger: balance row of % missing for transfer %', account, NEW.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    updated := updated + 1;
  END LOOP;
  IF updated <> 2 THEN
    RAISE EXCEPTION 'ledger: balance rows missing for transfer %', NEW.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END
$$;

-- AFTER, not BEFORE: with INSERT ... ON CONFLICT DO NOTHING a BEFORE trigger would fire for a row that is then skipped.
CREATE TRIGGER ledger_transfers_apply AFTER INSERT ON ledger_transfers FOR EACH ROW EXECUTE FUNCTION ledger_apply_transfer();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger: % is append-only (% refused); corrections are new transfers', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER ledger_transfers_append_only BEFORE UPDATE OR DELETE ON ledger_transfers FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_immutable BEFORE UPDATE OR DELETE ON ledger_accounts FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_balances_no_delete BEFORE DELETE ON ledger_balances FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_balances_no_truncate BEFORE TRUNCATE ON ledger_balances FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Balances start at zero and then move only through ledger_apply_transfer (trigger depth 2 here).
CREATE FUNCTION ledger_guard_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' AND (NEW.debits_pending, NEW.debits_posted, NEW.credits_pending, NEW.credits_posted) <> (0::bigint, 0::bigint, 0::bigint, 0::bigint) THEN
    RAISE EXCEPTION 'ledger: balances start at zero' USING ERRCODE = 'restrict_violation';
  END IF;
  IF TG_OP = 'UPDATE' AND pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'ledger: balances move only by inserting transfers' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER ledger_balances_guard BEFORE INSERT OR UPDATE ON ledger_balances FOR EACH ROW EXECUTE FUNCTION ledger_guard_balances();

-- Down Migration
DROP TABLE ledger_transfers;
DROP TABLE ledger_balances;
DROP TABLE ledger_accounts;
DROP FUNCTION ledger_guard_balances();
DROP FUNCTION ledger_refuse_change();
DROP FUNCTION ledger_apply_transfer();
DROP FUNCTION ledger_balance_slots();
