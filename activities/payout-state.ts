import type { Pool } from '../lib/db';
import type { PayoutStateRecord } from '../contracts/payout';

/** Mirrors a saga's state into the read model; a late (lower version) write changes nothing. */
export async function writePayoutState(pool: Pool, record: PayoutStateRecord): Promise<void> {
  await pool.query(
    `UPDATE payouts SET status = $3, version = $2, provider_payout_id = coalesce($4, provider_payout_id), failure_code = coalesce($5, failure_code),
            decline_code = coalesce($6, decline_code), stuck = $7, updated_at = now()
      WHERE payout_id = $1 AND version < $2`,
    [record.payoutId, record.version, record.status, record.providerPayoutId ?? null, record.failureCode ?? null, record.declineCode ?? null, record.stuck],
  );
}
