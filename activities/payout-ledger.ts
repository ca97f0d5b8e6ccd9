import { ApplicationFailure } from '@temporalio/common';
import type { Pool } from '../lib/db';
import type { PayoutStateRecord } from '../contracts/payout';
import { isLedgerError, type Ledger, type TransferResult } from '../ledger';
import { writePayoutState } from './payout-state';

/** What a saga step learns from the ledger: the transfer id, or a business refusal code. */
export type LedgerStepResult = { ok: true; transferId: number; replayed: boolean } | { ok: false; code: string; detail: string };

function toStepResult(outcome: TransferResult): LedgerStepResult {
  if (isLedgerError(outcome)) return { ok: false, code: outcome.code, detail: outcome.detail };
  return { ok: true, transferId: outcome.transfer.id, replayed: outcome.result === 'exists' };
}

/** A refusal the saga cannot compensate by itself (the ledger disagrees with the saga's state): stop and page staff. */
function unexpected(step: string, result: LedgerStepResult): never {
  const detail = result.ok ? 'unexpected success' : `${result.code}: ${result.detail}`;
  throw ApplicationFailure.nonRetryable(`${step} refused by the ledger: ${detail}`, 'LedgerInconsistency');
}

/**
 * The payout's money movements. Every call carries an idempotency key derived from the workflow id and
 * the step (`<payout id>:hold`, ...), so a retried or replayed activity returns the first result.
 * The player's money is held against the provider's clearing account: post on settlement, void on
 * failure or cancellation, refund (a new transfer) when the provider returns a settled payout.
 * Post, void and refund take the saga state they lead to (`record`) and mirror it once the money moved.
 */
export function createPayoutLedgerActivities(ledger: Ledger, pool: Pool) {
  const mirrored = async (result: LedgerStepResult, record: PayoutStateRecord | undefined) => {
    if (record) await writePayoutState(pool, record);
    return result;
  };
  return {
    async holdPayoutFunds(input: { idempotencyKey: string; payoutId: string; accountId: string; amountMinor: number; currency: string }): Promise<LedgerStepResult> {
      const clearing = await ledger.ensureSystemAccount('provider_clearing', input.currency);
      return toStepResult(
        await ledger.hold({
          idempotencyKey: input.idempotencyKey,
          debitAccountId: input.accountId,
          creditAccountId: clearing.id,
          amount: input.amountMinor,
          currency: input.currency,
          metadata: { payout_id: input.payoutId, step: 'hold' },
        }),
      );
    },

    async postPayoutHold(input: { idempotencyKey: string; payoutId: string; holdTransferId: number; record?: PayoutStateRecord }): Promise<LedgerStepResult> {
      const result = toStepResult(await ledger.post({ idempotencyKey: input.idempotencyKey, pendingId: input.holdTransferId, metadata: { payout_id: input.payoutId, step: 'post' } }));
      return result.ok ? mirrored(result, input.record) : unexpected('post', result);
    },

    async voidPayoutHold(input: { idempotencyKey: string; payoutId: string; holdTransferId: number; record?: PayoutStateRecord }): Promise<LedgerStepResult> {
      const result = toStepResult(await ledger.void({ idempotencyKey: input.idempotencyKey, pendingId: input.holdTransferId, metadata: { payout_id: input.payoutId, step: 'void' } }));
      return result.ok ? mirrored(result, input.record) : unexpected('void', result);
    },

    /** For a return after the saga closed: refunds the payout's posted transfer, if it was ever posted. */
    async refundClosedPayout(input: { idempotencyKey: string; payoutId: string; returnReason: string }): Promise<{ refunded: boolean; detail: string }> {
      const post = await ledger.getTransfer(`${input.payoutId}:post`);
      if (!post) return { refunded: false, detail: 'the payout was never settled in the ledger' };
      const result = toStepResult(
        await ledger.refund({ idempotencyKey: input.idempotencyKey, transferId: post.id, metadata: { payout_id: input.payoutId, step: 'refund', return_reason: input.returnReason } }),
      );
      return result.ok ? { refunded: true, detail: result.replayed ? 'already refunded' : 'refunded' } : unexpected('refund', result);
    },

    async refundReturnedPayout(input: { idempotencyKey: string; payoutId: string; postTransferId: number; record?: PayoutStateRecord }): Promise<LedgerStepResult> {
      const result = toStepResult(await ledger.refund({ idempotencyKey: input.idempotencyKey, transferId: input.postTransferId, metadata: { payout_id: input.payoutId, step: 'refund' } }));
      return result.ok ? mirrored(result, input.record) : unexpected('refund', result);
    },
  };
}
