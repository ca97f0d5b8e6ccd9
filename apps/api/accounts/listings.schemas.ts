import { z } from 'zod';
import { DEPOSIT_STATUSES } from '../../../contracts/deposit';
import { PAYOUT_STATUSES } from '../../../contracts/payout';
import { currencySchema } from '../common/money';
import { cursorParam, fromParam, nextCursorBody, pageLimit, statusListParam, toParam } from '../common/pagination';
import { depositBody } from '../deposits/deposits.schemas';
import { payoutBody } from '../payouts/payouts.schemas';

export const payoutHistoryQuery = z.strictObject({
  status: statusListParam(PAYOUT_STATUSES),
  from: fromParam.describe('ISO 8601 instant: payouts requested at or after it'),
  to: toParam.describe('ISO 8601 instant: payouts requested before it (exclusive)'),
  limit: pageLimit,
  cursor: cursorParam,
});

export const depositHistoryQuery = z.strictObject({
  status: statusListParam(DEPOSIT_STATUSES),
  from: fromParam.describe('ISO 8601 instant: deposits requested at or after it'),
  to: toParam.describe('ISO 8601 instant: deposits requested before it (exclusive)'),
  limit: pageLimit,
  cursor: cursorParam,
});

export const statementQuery = z.strictObject({
  currency: currencySchema.optional().describe("the account's currency (an account holds one); another is 422 CURRENCY_MISMATCH"),
  from: fromParam.describe('ISO 8601 instant: movements at or after it'),
  to: toParam.describe('ISO 8601 instant: movements before it (exclusive)'),
  limit: pageLimit,
  cursor: cursorParam,
});

/**
 * A payout as listed: the fields GET /v1/payouts/{payout_id} answers the same reader, from the read model,
 * without the timeline (read it there) and without what only the live saga knows (cancellable, review).
 */
export const payoutListItem = payoutBody
  .omit({ timeline: true, cancellable: true, review: true, workflow_task_failure: true, return_reason: true })
  .extend({ updated_at: z.string().describe('ISO 8601: the last change of its status') });

export const depositListItem = depositBody.omit({ timeline: true, workflow_task_failure: true }).extend({ updated_at: z.string().describe('ISO 8601: the last change of its status') });

export const payoutHistoryBody = z.object({ items: z.array(payoutListItem).describe('newest first (requested_at, then payout_id)'), next_cursor: nextCursorBody });
export const depositHistoryBody = z.object({ items: z.array(depositListItem).describe('newest first (requested_at, then deposit_id)'), next_cursor: nextCursorBody });

export const STATEMENT_KINDS = ['deposit', 'payout_hold', 'payout_settled', 'payout_released', 'payout_refunded', 'chargeback', 'debt_repayment', 'transfer'] as const;

const balanceFigures = z.object({
  available: z.number().int().describe('posted − held: what the account can pay out'),
  held: z.number().int().describe('pending debits: payout holds not yet settled or released'),
  posted: z.number().int().describe('posted credits − posted debits'),
});

export const statementEntry = z.object({
  transfer_id: z.number().int().describe('the ledger transfer'),
  kind: z
    .enum(STATEMENT_KINDS)
    .describe(
      'deposit: a deposit credited; payout_hold: a payout’s money held (pending); payout_settled: the hold posted (the payout paid); payout_released: the hold voided (payout failed or cancelled); payout_refunded: a settled payout returned by the provider and refunded; chargeback: what a charged-back deposit took from the balance; debt_repayment: a later deposit repaying a chargeback debt; transfer: any other movement (operator funding, adjustments)',
    ),
  at: z.string().describe('ISO 8601: when the transfer was written'),
  payout_id: z.string().optional(),
  deposit_id: z.string().optional(),
  amount: z
    .object({ minor_units: z.number().int(), currency: z.string() })
    .describe('signed change of the available balance (the running balance): a hold lowers it at once, so the settlement of a whole hold is 0 here (it moves posted and held by the same amount, see posted_change and held_change)'),
  posted_change: z.number().int().describe('signed change of posted, minor units'),
  held_change: z.number().int().describe('signed change of held, minor units; amount = posted_change − held_change'),
  balance_after: balanceFigures.describe('the account’s balance right after this transfer (all of its history, whatever the page, range or cursor)'),
});

export const statementBody = z.object({
  account_id: z.string(),
  currency: z.string(),
  balance: balanceFigures.describe('the account’s balance now, read in the same snapshot as the entries: on the last page without `to`, the last entry’s balance_after equals it'),
  items: z.array(statementEntry).describe('oldest first, by transfer id'),
  next_cursor: nextCursorBody,
});
