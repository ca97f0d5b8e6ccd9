import type { Ledger } from '../ledger';
import type { PayoutStateRecord, ReviewReason } from '../contracts/payout';
import { createPayoutLedgerActivities } from './payout-ledger';
import { writePayoutState } from './payout-state';
import type { Pool } from '../lib/db';
import { inTransaction } from '../lib/db';
import { currencyExponent } from '../ledger';
import { limitsOfAccount } from '../lib/account-limits';
import { debtOf } from './player-debt';
import { describeLimit, type MoneyLimits } from '../lib/limits';

export interface AuthorizePayoutInput {
  payoutId: string;
  accountId: string;
  amountMinor: number;
  currency: string;
  destinationMethod: string;
  destinationLast4: string;
  provider: string;
  requestedAt: string;
  /** 'review': over the daily or hourly limit, the payout is sent to staff review rather than declined. */
  limitBreach?: 'review';
}

export type AuthorizationResult = { approved: true; review?: ReviewReason } | { approved: false; code: string; detail: string };

/** Authorization and hold as one step: the payout is held, or declined with the code of the step that refused. */
export type Admission = { outcome: 'held'; holdTransferId: number; review?: ReviewReason } | { outcome: 'declined'; stage: 'authorization' | 'hold'; code: string; detail: string };

/** Statuses whose money is (or was) on its way out: they count against the daily and hourly limits. */
const COUNTED_STATUSES = ['AUTHORIZED', 'HELD', 'PENDING_REVIEW', 'SUBMITTED', 'SETTLED'];

export function createPayoutActivities(deps: { pool: Pool; ledger: Ledger; limits: MoneyLimits }) {
  const { pool, ledger, limits } = deps;
  const money = createPayoutLedgerActivities(ledger, pool);

  const activities = {
    /**
     * Authorization: the account exists, is a player's and is not frozen, the currency matches, and the amount is within
     * the per-payout, daily and hourly limits. Limit check and the payout's row are written under a
     * per-account advisory lock, so concurrent payouts of one account cannot pass the limits together.
     * Idempotent by payout id: a retry returns the decision already recorded.
     */
    async authorizePayout(input: AuthorizePayoutInput): Promise<AuthorizationResult> {
      const account = await ledger.getAccount(input.accountId);
      const exponent = currencyExponent(input.currency);
      const { rows: statusRows } = await pool.query<{ status: string }>('SELECT status FROM account_status WHERE account_id = $1', [input.accountId]);
      const frozen = statusRows[0]?.status === 'frozen';
      // The account's own limits where staff set them, else the defaults (in its currency).
      const accountLimits = account && exponent !== undefined && account.currency === input.currency ? await limitsOfAccount(pool, limits, input.accountId, input.currency) : undefined;
      let refusal: { code: string; detail: string } | undefined;
      if (!account || account.kind !== 'player') refusal = { code: 'ACCOUNT_NOT_FOUND', detail: `No player account ${input.accountId}` };
      // The staff reason for a freeze stays in account_status (staff views): the player sees a neutral answer.
      else if (frozen) refusal = { code: 'ACCOUNT_NOT_ACTIVE', detail: 'This account cannot make payouts at the moment' };
      // A chargeback left the player owing: no withdrawal until deposits have repaid it.
      else if ((await debtOf(ledger, input.accountId)) > 0) refusal = { code: 'OUTSTANDING_DEBT', detail: 'This account has an outstanding balance to settle before it can withdraw' };
      else if (account.currency !== input.currency) refusal = { code: 'CURRENCY_MISMATCH', detail: `Account ${input.accountId} holds ${account.currency}, not ${input.currency}` };
      else if (exponent === undefined) refusal = { code: 'UNKNOWN_CURRENCY', detail: input.currency };
      else if (input.amountMinor > accountLimits!.payout_max) refusal = { code: 'LIMIT_EXCEEDED', detail: `A payout may be at most ${describeLimit(accountLimits!.payout_max, input.currency)}` };

      return inTransaction(pool, async (db) => {
        await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`payout-limits:${input.accountId}`]);
        const existing = await db.query<{ status: string; decline_code: string | null; review_reason: ReviewReason | null }>('SELECT status, decline_code, review_reason FROM payouts WHERE payout_id = $1', [input.payoutId]);
        if (existing.rows[0]) {
          const row = existing.rows[0];
          if (row.status === 'DECLINED') return { approved: false, code: row.decline_code ?? 'DECLINED', detail: 'declined at authorization' };
          return row.review_reason ? { approved: true, review: row.review_reason } : { approved: true };
        }
        let review: ReviewReason | undefined;
        if (!refusal) {
          const { rows } = await db.query<{ day_total: number; hour_count: number }>(
            `SELECT coalesce(sum(amount_minor), 0)::bigint AS day_total,
                    count(*) FILTER (WHERE requested_at > $3::timestamptz - interval '1 hour')::int AS hour_count
               FROM payouts
              WHERE account_id = $1 AND status = ANY($2) AND requested_at > $3::timestamptz - interval '1 day'`,
            [input.accountId, COUNTED_STATUSES, input.requestedAt],
          );
          const { day_total, hour_count } = rows[0]!;
          const { payout_daily_max: dailyMax, payout_hourly_max_count: hourlyMax } = accountLimits!;
          if (day_total + input.amountMinor > dailyMax) {
            refusal = { code: 'LIMIT_EXCEEDED', detail: `Payouts may total at most ${describeLimit(dailyMax, input.currency)} a day` };
          } else if (hour_count >= hourlyMax) {
            refusal = { code: 'VELOCITY_LIMIT_EXCEEDED', detail: `At most ${hourlyMax} payouts an hour` };
          }
          // Where limits send to review, staff decide instead: the payout is held and waits for them.
          if (refusal && input.limitBreach === 'review') {
            review = refusal.code as ReviewReason;
            refusal = undefined;
          }
        }
        await db.query(
          `INSERT INTO payouts (payout_id, account_id, amount_minor, currency, destination_method, destination_last4, provider, status, decline_code, version, requested_at, review_reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11)`,
          [input.payoutId, input.accountId, input.amountMinor, input.currency, input.destinationMethod, input.destinationLast4, input.provider, refusal ? 'DECLINED' : 'AUTHORIZED', refusal?.code ?? null, input.requestedAt, review ?? null],
        );
        if (refusal) return { approved: false, ...refusal };
        return review ? { approved: true, review } : { approved: true };
      });
    },

    /**
     * Whether a held payout may still go out (checked when staff approve it at review, which may be days after
     * its authorization): the account is not frozen and owes no chargeback since.
     */
    async recheckPayoutAccount(input: { payoutId: string; accountId: string }): Promise<{ refusal?: { code: string; detail: string } }> {
      const { rows } = await pool.query<{ status: string }>('SELECT status FROM account_status WHERE account_id = $1', [input.accountId]);
      if (rows[0]?.status === 'frozen') return { refusal: { code: 'ACCOUNT_NOT_ACTIVE', detail: 'the account was frozen since' } };
      if ((await debtOf(ledger, input.accountId)) > 0) return { refusal: { code: 'OUTSTANDING_DEBT', detail: 'the account owes a reversed deposit since' } };
      return {};
    },

    /** Mirrors the saga's state into the read model; a late (lower version) write changes nothing. */
    async recordPayoutState(input: PayoutStateRecord): Promise<void> {
      await writePayoutState(pool, input);
    },

    /**
     * The saga's first step: authorize, then hold the money (`<payout id>:hold`), and mirror the outcome
     * (HELD, or DECLINED with the refusing step's code) at `version`. One local activity instead of four;
     * each part is idempotent, so a retry returns the first outcome.
     */
    async admitPayout(input: AuthorizePayoutInput & { holdIdempotencyKey: string; version: number }): Promise<Admission> {
      const { holdIdempotencyKey, version, ...authorization } = input;
      const state = { payoutId: input.payoutId, version, stuck: false };
      const authorized = await activities.authorizePayout(authorization);
      if (!authorized.approved) {
        await writePayoutState(pool, { ...state, status: 'DECLINED', declineCode: authorized.code });
        return { outcome: 'declined', stage: 'authorization', code: authorized.code, detail: authorized.detail };
      }
      const hold = await money.holdPayoutFunds({ idempotencyKey: holdIdempotencyKey, payoutId: input.payoutId, accountId: input.accountId, amountMinor: input.amountMinor, currency: input.currency });
      if (!hold.ok) {
        await writePayoutState(pool, { ...state, status: 'DECLINED', declineCode: hold.code });
        return { outcome: 'declined', stage: 'hold', code: hold.code, detail: hold.detail };
      }
      await writePayoutState(pool, { ...state, status: 'HELD' });
      return { outcome: 'held', holdTransferId: hold.transferId, ...(authorized.review ? { review: authorized.review } : {}) };
    },
  };
  return activities;
}
