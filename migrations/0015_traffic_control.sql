-- Up Migration

-- The platform's degradation mode, switched at run time by staff (PUT /v1/ops/mode) and read by every API
-- instance (each refreshes it about twice a second). One row; every change is also in staff_audit_log.
CREATE TABLE platform_mode (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  mode       text        NOT NULL CHECK (mode IN ('normal', 'no-new-payouts', 'read-only')),
  reason     text        NOT NULL,
  changed_by text        NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO platform_mode (mode, reason, changed_by) VALUES ('normal', 'initial', 'system');

-- Rate-limit counters shared by all API instances (rate-limiter-flexible's RateLimiterPostgres layout:
-- one fixed window per key, `expire` in epoch milliseconds). UNLOGGED: counters are worth no WAL and no
-- fsync; after a crash they restart empty, which only forgives one window.
CREATE UNLOGGED TABLE rate_limits (
  key    varchar(255) PRIMARY KEY,
  points integer      NOT NULL DEFAULT 0,
  expire bigint
);

-- Down Migration
DROP TABLE rate_limits;
DROP TABLE platform_mode;
