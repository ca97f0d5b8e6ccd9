import type { z } from 'zod';
import type { Ledger } from '../../../ledger';
import type { Pool } from '../../../lib/db';
import type { Principal } from '../auth/auth';
import { ProblemError } from '../common/problem';
import { encodeCursor, keysetOf, transferPositionOf, type CursorScope, type DecodedCursor, type KeysetPosition } from '../common/pagination';
import { depositViewOfRow } from '../deposits/deposit-saga-kind';
import { toDepositBody } from '../deposits/deposits.service';
import { payoutViewOfRow } from '../payouts/payout-saga-kind';
import { toPayoutBody } from '../payouts/payouts.service';
import { accountStatement, listDepositRows, listPayoutRows, type Listed, type MovementRow } from './listings.store';
import type { depositHistoryQuery, depositListItem, payoutHistoryQuery, payoutListItem, statementBody, statementEntry, statementQuery, STATEMENT_KINDS } from './listings.schemas';
import type { PayoutRow } from '../payouts/payout-saga-kind';
import type { DepositRow } from '../deposits/deposit-saga-kind';

type Page<Item> = { items: Item[]; next_cursor: string | null };

/** A player's payout and deposit history and its account statement; the caller has checked the account is the reader's to see. */
export class ListingsService {
  constructor(
    private readonly pool: Pool,
    private readonly ledger: Ledger,
  ) {}

  async payouts(accountId: string, query: z.output<typeof payoutHistoryQuery>, reader: Principal['role']): Promise<Page<z.infer<typeof payoutListItem>>> {
    await this.existing(accountId);
    const after = keyset(query.cursor, 'account_payouts', accountId);
    const listed = await listPayoutRows(this.pool, { accountId, statuses: query.status, from: query.from, to: query.to, after, limit: query.limit + 1 });
    return page(listed, query.limit, 'account_payouts', accountId, (entry) => toPayoutListItem(entry, reader));
  }

  async deposits(accountId: string, query: z.output<typeof depositHistoryQuery>, reader: Principal['role']): Promise<Page<z.infer<typeof depositListItem>>> {
    await this.existing(accountId);
    const after = keyset(query.cursor, 'account_deposits', accountId);
    const listed = await listDepositRows(this.pool, { accountId, statuses: query.status, from: query.from, to: query.to, after, limit: query.limit + 1 });
    return page(listed, query.limit, 'account_deposits', accountId, (entry) => toDepositListItem(entry, reader));
  }

  async statement(accountId: string, query: z.output<typeof statementQuery>): Promise<z.infer<typeof statementBody>> {
    const account = await this.existing(accountId);
    if (query.currency && query.currency !== account.currency) throw new ProblemError('CURRENCY_MISMATCH', `Account ${accountId} holds ${account.currency}`);
    const position = transferPositionOf(query.cursor, 'account_statement', accountId);
    if (position === 'foreign') throw foreignCursor();
    const { rows, balance } = await accountStatement(this.pool, { accountId, afterTransferId: position?.transfer_id, from: query.from, to: query.to, limit: query.limit + 1 });
    const more = rows.length > query.limit;
    const items = rows.slice(0, query.limit).map((row) => statementEntryOf(row, account.currency));
    const last = items.at(-1);
    return {
      account_id: accountId,
      currency: account.currency,
      balance: { available: balance?.available ?? 0, held: balance?.held ?? 0, posted: balance?.posted ?? 0 },
      items,
      next_cursor: more && last ? encodeCursor('account_statement', { transfer_id: last.transfer_id }, accountId) : null,
    };
  }

  private async existing(accountId: string) {
    const account = await this.ledger.getAccount(accountId);
    if (!account || account.kind !== 'player') throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${accountId}`);
    return account;
  }
}

function foreignCursor(): ProblemError {
  return new ProblemError('VALIDATION_FAILED', 'The cursor belongs to another listing', { errors: [{ path: 'query.cursor', message: 'pass the next_cursor this listing gave, unchanged' }] });
}

/** The keyset position of a cursor of this listing; another listing's cursor is refused. */
export function keyset(cursor: DecodedCursor | undefined, scope: CursorScope, accountId?: string): KeysetPosition | undefined {
  const position = keysetOf(cursor, scope, accountId);
  if (position === 'foreign') throw foreignCursor();
  return position;
}

/** A page of `limit` rows out of `limit + 1` read: the extra one says whether there is a next page. */
export function page<Row, Item>(listed: Listed<Row>[], limit: number, scope: CursorScope, accountId: string | undefined, toItem: (entry: Listed<Row>) => Item): Page<Item> {
  const shown = listed.slice(0, limit);
  const last = shown.at(-1);
  return { items: shown.map(toItem), next_cursor: listed.length > limit && last ? encodeCursor(scope, last.position, accountId) : null };
}

/** The GET /v1/payouts/{id} mapping for this reader (staff text for staff only), less what a list leaves out. */
export function toPayoutListItem({ row, operator }: Listed<PayoutRow>, reader: Principal['role']): z.infer<typeof payoutListItem> {
  const { timeline: _timeline, cancellable: _cancellable, review: _review, workflow_task_failure: _failure, return_reason: _return, ...item } = toPayoutBody({ ...payoutViewOfRow(row), operator }, reader);
  return { ...item, updated_at: row.updated_at.toISOString() };
}

export function toDepositListItem({ row, operator }: Listed<DepositRow>, reader: Principal['role']): z.infer<typeof depositListItem> {
  const { timeline: _timeline, workflow_task_failure: _failure, ...item } = toDepositBody({ ...depositViewOfRow(row), operator }, reader);
  return { ...item, updated_at: row.updated_at.toISOString() };
}

const PAYOUT_KINDS = { hold: 'payout_hold', post: 'payout_settled', void: 'payout_released', refund: 'payout_refunded', transfer: 'transfer' } as const;

/** What a movement was for, from the saga step its transfer carries (metadata payout_id / deposit_id, step). */
function kindOf(row: MovementRow): (typeof STATEMENT_KINDS)[number] {
  const { payout_id: payoutId, deposit_id: depositId, step } = row.metadata;
  if (typeof payoutId === 'string') return PAYOUT_KINDS[row.kind];
  if (typeof depositId === 'string' && row.kind === 'transfer') {
    if (step === 'credit') return 'deposit';
    // Both collections of a debt are debt_collected; the one right after the chargeback is its key's `:chargeback:collect`.
    if (step === 'debt_collected') return row.idempotency_key.endsWith(':chargeback:collect') ? 'chargeback' : 'debt_repayment';
  }
  return 'transfer';
}

function statementEntryOf(row: MovementRow, currency: string): z.infer<typeof statementEntry> {
  const { payout_id: payoutId, deposit_id: depositId } = row.metadata;
  return {
    transfer_id: row.id,
    kind: kindOf(row),
    at: row.created_at.toISOString(),
    ...(typeof payoutId === 'string' ? { payout_id: payoutId } : {}),
    ...(typeof depositId === 'string' ? { deposit_id: depositId } : {}),
    amount: { minor_units: row.posted_change - row.held_change, currency },
    posted_change: row.posted_change,
    held_change: row.held_change,
    balance_after: { available: row.posted_after - row.held_after, held: row.held_after, posted: row.posted_after },
  };
}
