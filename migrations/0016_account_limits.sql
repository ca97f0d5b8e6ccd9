-- Up Migration

-- Money limits finance staff set for one account, overriding the global defaults (PAYOUT_MAX_AMOUNT, ...)
-- for it: in the account's own currency (minor units) and counts. NULL: the default applies. Each change is
-- also written to staff_audit_log.
CREATE TABLE account_limits (
  account_id               text        PRIMARY KEY,
  payout_max_minor         bigint      CHECK (payout_max_minor > 0),
  payout_daily_max_minor   bigint      CHECK (payout_daily_max_minor > 0),
  payout_hourly_max_count  integer     CHECK (payout_hourly_max_count > 0),
  deposit_max_minor        bigint      CHECK (deposit_max_minor > 0),
  deposit_daily_max_minor  bigint      CHECK (deposit_daily_max_minor > 0),
  max_balance_minor        bigint      CHECK (max_balance_minor > 0),
  reason                   text        NOT NULL,
  changed_by               text        NOT NULL,
  changed_at               timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE account_limits;
