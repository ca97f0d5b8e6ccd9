import { ApplicationFailure } from '@temporalio/common';
import { inTransaction, type Pool } from '../lib/db';
import { limitsOfAccount } from '../lib/account-limits';
import { depositAmountRefusal, describeLimit, type MoneyLimits } from '../lib/limits';
import { findAtAggregator, submitToAggregator } from './aggregator-client';
import type { ProviderRegistry } from './provider-registry';
import { DEPOSIT_PROVIDER } from '../lib/providers';
import { isLedgerError, type Ledger } from '../ledger';
import { collectDebt, debtOf, ensureReceivable } from './player-debt';

/** The aggregator's deposit as the saga needs it. */
export interface ProviderDeposit {
  providerDepositId: string;
  status: 'pending' | 'succeeded' | 'failed';
  checkoutUrl: string;
  /** What the provider's record says the player pays: compared with the request before the credit. */
  amount?: { minor_units: number; currency: string };
  failureCode?: string;
  /** The provider charged it back after it succeeded (its status then still reads succeeded here: it was paid). */
  reversed?: { at: string; reason: string };
}

interface AggregatorDepositBody {
  id: string;
  status: ProviderDeposit['status'] | 'reversed';
  reversed_at?: string;
  reversal_reason?: string;
  checkout_url: string;
  amount?: { minor_units: number; currency: string };
  failure_code?: string;
}

export interface RecordDepositStateInput {
  depositId: string;
  accountId: string;
  amountMinor: number;
  currency: string;
  provider: string;
  requestedAt: string;
  version: number;
  status: string;
  checkoutUrl?: string;
  providerDepositId?: string;
  failureCode?: string;
  creditTransferId?: number;
  stuck: boolean;
}

export interface AuthorizeDepositInput {
  depositId: string;
  accountId: string;
  amountMinor: number;
  currency: string;
  requestedAt: string;
}

export type ChargebackOutcome =
  | { outcome: 'reversed'; amount: number; collected: number; debt: number }
  | { outcome: 'not_credited'; depositStatus: string }
  | { outcome: 'unknown_deposit' };

export type DepositAuthorization = { approved: true } | { approved: false; code: string; detail: string };

function toProviderDeposit(body: AggregatorDepositBody): ProviderDeposit {
  return {
    providerDepositId: body.id,
    // A reversed deposit did succeed: the deposit saga credits it; the reversal saga takes it back.
    status: body.status === 'reversed' ? 'succeeded' : body.status,
    checkoutUrl: body.checkout_url,
    ...(body.amount ? { amount: { minor_units: body.amount.minor_units, currency: body.amount.currency } } : {}),
    failureCode: body.failure_code,
    ...(body.status === 'reversed' ? { reversed: { at: body.reversed_at ?? new Date().toISOString(), reason: body.reversal_reason ?? 'chargeback' } } : {}),
  };
}

/** Mirrors a deposit saga's state into the read model; a late (lower version) write changes nothing. */
export async function writeDepositState(pool: Pool, record: RecordDepositStateInput): Promise<void> {
  await pool.query(
    `INSERT INTO deposits (deposit_id, account_id, amount_minor, currency, provider, status, checkout_url, provider_deposit_id, failure_code,
                           credit_transfer_id, stuck, version, requested_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (deposit_id) DO UPDATE
        SET status = EXCLUDED.status, version = EXCLUDED.version,
            checkout_url = coalesce(EXCLUDED.checkout_url, deposits.checkout_url),
            provider_deposit_id = coalesce(EXCLUDED.provider_deposit_id, deposits.provider_deposit_id),
            failure_code = coalesce(EXCLUDED.failure_code, deposits.failure_code),
            credit_transfer_id = coalesce(EXCLUDED.credit_transfer_id, deposits.credit_transfer_id),
            stuck = EXCLUDED.stuck, updated_at = now()
      WHERE deposits.version < EXCLUDED.version`,
    [
      record.depositId,
      record.accountId,
      record.amountMinor,
      record.currency,
      record.provider,
      record.status,
      record.checkoutUrl ?? null,
      record.providerDepositId ?? null,
      record.failureCode ?? null,
      record.creditTransferId ?? null,
      record.stuck,
      record.version,
      record.requestedAt,
    ],
  );
}

/**
 * The deposit saga's side effects. The provider's intent carries the deposit id as the aggregator's
 * Idempotency-Key and reference, so a retry after a timeout finds the first intent; the credit carries
 * `<deposit id>:credit`, so the player is credited at most once whatever is retried or replayed.
 */
export function createDepositActivities(deps: { pool: Pool; ledger: Ledger; providers: ProviderRegistry; limits: MoneyLimits }) {
  const { pool, ledger, limits } = deps;
  const { providers } = deps;

  const activities = {
    /**
     * The saga's first step: the read model's REQUESTED row (`record`), then the limits; a refusal is
     * mirrored as FAILED with its code. One local activity instead of two.
     */
    async admitDeposit(input: AuthorizeDepositInput & { record: RecordDepositStateInput }): Promise<DepositAuthorization> {
      const { record, ...request } = input;
      await writeDepositState(pool, record);
      const authorization = await activities.authorizeDeposit(request);
      if (!authorization.approved) await writeDepositState(pool, { ...record, version: record.version + 1, status: 'FAILED', failureCode: authorization.code });
      return authorization;
    },

    /**
     * The deposit's limits, before anything reaches the provider: the per-deposit cap, the account's
     * deposits in 24 hours, and its balance ceiling (posted balance plus approved deposits not yet
     * credited). Decided under a per-account advisory lock and recorded with the decision, so concurrent
     * deposits of one account cannot pass the limits together. Idempotent by deposit id.
     */
    async authorizeDeposit(input: AuthorizeDepositInput): Promise<DepositAuthorization> {
      return inTransaction(pool, async (db) => {
        await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`deposit-limits:${input.accountId}`]);
        const { rows: decided } = await db.query<{ approved: boolean; decline_code: string | null; decline_detail: string | null }>(
          'SELECT approved, decline_code, decline_detail FROM deposit_authorizations WHERE deposit_id = $1',
          [input.depositId],
        );
        if (decided[0]) return decided[0].approved ? { approved: true } : { approved: false, code: decided[0].decline_code!, detail: decided[0].decline_detail ?? '' };

        // The account's own limits where staff set them, else the defaults (in its currency).
        const accountLimits = await limitsOfAccount(db, limits, input.accountId, input.currency);
        let refusal = depositAmountRefusal(accountLimits.deposit_max, input.amountMinor, input.currency);
        if (!refusal) {
          const { rows } = await db.query<{ day_total: string; uncredited: string }>(
            `SELECT coalesce(sum(a.amount_minor) FILTER (WHERE a.requested_at > $2::timestamptz - interval '1 day'), 0)::text AS day_total,
                    coalesce(sum(a.amount_minor) FILTER (WHERE d.status IS DISTINCT FROM 'CREDITED'), 0)::text AS uncredited
               FROM deposit_authorizations a LEFT JOIN deposits d ON d.deposit_id = a.deposit_id
              WHERE a.account_id = $1 AND a.approved AND d.status IS DISTINCT FROM 'FAILED'`,
            [input.accountId, input.requestedAt],
          );
          const posted = (await ledger.getTotals(input.accountId))?.posted ?? 0n;
          const amount = BigInt(input.amountMinor);
          const { deposit_daily_max: dailyMax, max_balance: balanceMax } = accountLimits;
          if (BigInt(rows[0]!.day_total) + amount > BigInt(dailyMax)) {
            refusal = { code: 'LIMIT_EXCEEDED', detail: `Deposits may total at most ${describeLimit(dailyMax, input.currency)} a day` };
          } else if (posted + BigInt(rows[0]!.uncredited) + amount > BigInt(balanceMax)) {
            refusal = { code: 'LIMIT_EXCEEDED', detail: `A balance may be at most ${describeLimit(balanceMax, input.currency)}` };
          }
        }
        await db.query(
          `INSERT INTO deposit_authorizations (deposit_id, account_id, amount_minor, currency, approved, decline_code, decline_detail, requested_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [input.depositId, input.accountId, input.amountMinor, input.currency, !refusal, refusal?.code ?? null, refusal?.detail ?? null, input.requestedAt],
        );
        return refusal ? { approved: false, ...refusal } : { approved: true };
      });
    },

    /** Network errors, 5xx, 408 and 429 are retryable (ProviderUnavailable); any other 4xx is a final refusal (ProviderRejected). */
    async createDepositIntent(input: { depositId: string; amount: { minor_units: number; currency: string }; record?: RecordDepositStateInput }): Promise<ProviderDeposit> {
      const intent = toProviderDeposit((await providers.guarded(DEPOSIT_PROVIDER, 'submit', (aggregator) => submitToAggregator(aggregator, 'deposits', input.depositId, { amount: input.amount }))) as AggregatorDepositBody);
      // The state the intent leads to (PENDING, with the checkout), mirrored in the same activity.
      if (input.record) await writeDepositState(pool, { ...input.record, checkoutUrl: intent.checkoutUrl, providerDepositId: intent.providerDepositId });
      return intent;
    },

    /** The aggregator's current view of the deposit; undefined when it has never seen it. */
    async fetchProviderDeposit(input: { depositId: string }): Promise<ProviderDeposit | undefined> {
      const found = await providers.measured(DEPOSIT_PROVIDER, 'lookup', (aggregator) => findAtAggregator(aggregator, 'deposits', input.depositId, 'status'));
      return found === undefined ? undefined : toProviderDeposit(found as AggregatorDepositBody);
    },

    /** One posted transfer provider_clearing → player. A refusal means the ledger disagrees with the saga: stop for staff. */
    async creditDeposit(input: { idempotencyKey: string; depositId: string; accountId: string; amountMinor: number; currency: string; record?: RecordDepositStateInput }): Promise<{ transferId: number; replayed: boolean }> {
      const clearing = await ledger.ensureSystemAccount('provider_clearing', input.currency);
      const outcome = await ledger.transfer({
        idempotencyKey: input.idempotencyKey,
        debitAccountId: clearing.id,
        creditAccountId: input.accountId,
        amount: input.amountMinor,
        currency: input.currency,
        metadata: { deposit_id: input.depositId, step: 'credit' },
      });
      if (isLedgerError(outcome)) throw ApplicationFailure.nonRetryable(`credit refused by the ledger: ${outcome.code}: ${outcome.detail}`, 'LedgerInconsistency');
      // A player who owes a chargeback repays it from this deposit first (what it can: at most the debt).
      await collectDebt(ledger, pool, input.accountId, input.currency, `${input.depositId}:repay`, { deposit_id: input.depositId, step: 'debt_collected' });
      if (input.record) await writeDepositState(pool, { ...input.record, creditTransferId: outcome.transfer.id });
      return { transferId: outcome.transfer.id, replayed: outcome.result === 'exists' };
    },

    /** The deposit as the read model recorded it, for checking a provider's reversal against it. */
    async requestedDepositTerms(input: { depositId: string }): Promise<{ accountId: string; amount: { minor_units: number; currency: string } } | undefined> {
      const { rows } = await pool.query<{ account_id: string; amount_minor: string | number; currency: string }>('SELECT account_id, amount_minor, currency FROM deposits WHERE deposit_id = $1', [input.depositId]);
      const row = rows[0];
      return row && { accountId: row.account_id, amount: { minor_units: Number(row.amount_minor), currency: row.currency } };
    },

    /**
     * Takes a charged-back deposit back from the player, once: the full amount becomes the player's debt
     * (`<deposit id>:chargeback`, receivable → provider clearing), then what the player's available balance
     * covers is collected at once (`<deposit id>:chargeback:collect`); the rest stays owed until deposits
     * repay it. Only a credited deposit is reversed ('not_credited' otherwise: nothing was given).
     */
    async chargeBackDeposit(input: { depositId: string; reason: string; source: 'provider' | 'staff'; actor?: string }): Promise<ChargebackOutcome> {
      const { rows } = await pool.query<{ account_id: string; amount_minor: string | number; currency: string; status: string }>('SELECT account_id, amount_minor, currency, status FROM deposits WHERE deposit_id = $1', [input.depositId]);
      const row = rows[0];
      if (!row) return { outcome: 'unknown_deposit' };
      const credit = await ledger.getTransfer(`${input.depositId}:credit`);
      if (!credit) return { outcome: 'not_credited', depositStatus: row.status };
      const playerId = row.account_id;
      const amount = Number(row.amount_minor);
      const receivable = await ensureReceivable(ledger, playerId, row.currency);
      const clearing = await ledger.ensureSystemAccount('provider_clearing', row.currency);
      const metadata = { deposit_id: input.depositId, step: 'chargeback', reason: input.reason, source: input.source, ...(input.actor ? { actor: input.actor } : {}) };
      const taken = await ledger.transfer({ idempotencyKey: `${input.depositId}:chargeback`, debitAccountId: receivable, creditAccountId: clearing.id, amount, currency: row.currency, metadata });
      if (isLedgerError(taken)) throw ApplicationFailure.nonRetryable(`chargeback refused by the ledger: ${taken.code}: ${taken.detail}`, 'LedgerInconsistency');
      const collected = await collectDebt(ledger, pool, playerId, row.currency, `${input.depositId}:chargeback:collect`, { deposit_id: input.depositId, step: 'debt_collected' });
      await pool.query(
        `UPDATE deposits SET status = 'REVERSED', version = greatest(version, 1000000), reversed_at = coalesce(reversed_at, now()), reversal_reason = coalesce(reversal_reason, $2), updated_at = now()
          WHERE deposit_id = $1`,
        [input.depositId, input.reason],
      );
      return { outcome: 'reversed', amount, collected, debt: await debtOf(ledger, playerId) };
    },

    /** Mirrors the saga's state into the read model; a late (lower version) write changes nothing. */
    async recordDepositState(input: RecordDepositStateInput): Promise<void> {
      await writeDepositState(pool, input);
    },
  };
  return activities;
}
