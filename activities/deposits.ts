import { ApplicationFailure } from '@temporalio/common';
import type { Pool } from '../lib/db';
import { aggregatorBase, findAtAggregator, submitToAggregator } from './aggregator-client';
import { isLedgerError, type Ledger } from './ledger';

/** The aggregator's deposit as the saga needs it. */
export interface ProviderDeposit {
  providerDepositId: string;
  status: 'pending' | 'succeeded' | 'failed';
  checkoutUrl: string;
  /** What the provider's record says the player pays: compared with the request before the credit. */
  amount?: { minor_units: number; currency: string };
  failureCode?: string;
}

interface AggregatorDepositBody {
  id: string;
  status: ProviderDeposit['status'];
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

function toProviderDeposit(body: AggregatorDepositBody): ProviderDeposit {
  return {
    providerDepositId: body.id,
    status: body.status,
    checkoutUrl: body.checkout_url,
    ...(body.amount ? { amount: { minor_units: body.amount.minor_units, currency: body.amount.currency } } : {}),
    failureCode: body.failure_code,
  };
}

/**
 * The deposit saga's side effects. The provider's intent carries the deposit id as the aggregator's
 * Idempotency-Key and reference, so a retry after a timeout finds the first intent; the credit carries
 * `<deposit id>:credit`, so the player is credited at most once whatever is retried or replayed.
 */
export function createDepositActivities(deps: { pool: Pool; ledger: Ledger; providerUrl: string }) {
  const { pool, ledger } = deps;
  const base = aggregatorBase(deps.providerUrl);

  return {
    /** Network errors, 5xx, 408 and 429 are retryable (ProviderUnavailable); any other 4xx is a final refusal (ProviderRejected). */
    async createDepositIntent(input: { depositId: string; amount: { minor_units: number; currency: string } }): Promise<ProviderDeposit> {
      return toProviderDeposit((await submitToAggregator(base, 'deposits', input.depositId, { amount: input.amount })) as AggregatorDepositBody);
    },

    /** The aggregator's current view of the deposit; undefined when it has never seen it. */
    async fetchProviderDeposit(input: { depositId: string }): Promise<ProviderDeposit | undefined> {
      const found = await findAtAggregator(base, 'deposits', input.depositId, 'status');
      return found === undefined ? undefined : toProviderDeposit(found as AggregatorDepositBody);
    },

    /** One posted transfer provider_clearing → player. A refusal means the ledger disagrees with the saga: stop for staff. */
    async creditDeposit(input: { idempotencyKey: string; depositId: string; accountId: string; amountMinor: number; currency: string }): Promise<{ transferId: number; replayed: boolean }> {
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
      return { transferId: outcome.transfer.id, replayed: outcome.result === 'exists' };
    },

    /** Mirrors the saga's state into the read model; a late (lower version) write changes nothing. */
    async recordDepositState(input: RecordDepositStateInput): Promise<void> {
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
          input.depositId,
          input.accountId,
          input.amountMinor,
          input.currency,
          input.provider,
          input.status,
          input.checkoutUrl ?? null,
          input.providerDepositId ?? null,
          input.failureCode ?? null,
          input.creditTransferId ?? null,
          input.stuck,
          input.version,
          input.requestedAt,
        ],
      );
    },
  };
}
