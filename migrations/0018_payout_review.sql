-- Up Migration

-- Why a payout waits for staff review once held (PENDING_REVIEW), when its authorization sent it there
-- (a daily or hourly limit, where limits send to review): kept with the decision, so a retried
-- authorization returns it too. NULL: not sent to review by its limits (a large amount is the saga's call).
ALTER TABLE payouts ADD COLUMN review_reason text CHECK (review_reason IN ('LIMIT_EXCEEDED', 'VELOCITY_LIMIT_EXCEEDED'));

-- Down Migration
ALTER TABLE payouts DROP COLUMN review_reason;
