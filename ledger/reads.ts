import type { Pool } from '../lib/db';
import { SELECT_TRANSFER, toAccount, toTransfer, type AccountRow, type TransferRow } from './rows';
import type { Account, AccountTotals, Balance, SystemAccountKind, Transfer } from './types';

/** The ledger's reads: accounts, balances, exact totals and transfers. They never lock and never write. */
export function ledgerReads(pool: Pool) {
  async function getAccount(accountId: string): Promise<Account | undefined> {
    const { rows } = await pool.query<AccountRow>('SELECT * FROM ledger_accounts WHERE id = $1', [accountId]);
    return rows[0] && toAccount(rows[0]);
  }

  /**
   * An account's balance as numbers: exact for players (and any account that must not overdraw, whose
   * balance the database keeps a safe integer). A system account's balance may outgrow a JavaScript number
   * over its life (reading it then throws a RangeError): read its exact totals with getTotals.
   */
  async function getBalance(accountId: string): Promise<Balance | undefined> {
    const { rows } = await pool.query<Balance>(
      `SELECT account_id, currency,
              (sum(credits_posted) - sum(debits_posted) - sum(debits_pending))::bigint AS available,
              sum(debits_pending)::bigint AS held,
              (sum(credits_posted) - sum(debits_posted))::bigint AS posted
         FROM ledger_balances WHERE account_id = $1
        GROUP BY account_id, currency`,
      [accountId],
    );
    return rows[0];
  }

  /** An account's exact totals (summed over its balance slots), as BigInt: they may exceed 2^53 for system accounts. */
  async function getTotals(accountId: string): Promise<AccountTotals | undefined> {
    const { rows } = await pool.query<Record<'debits_pending' | 'debits_posted' | 'credits_pending' | 'credits_posted', string>>(
      `SELECT sum(debits_pending)::text AS debits_pending, sum(debits_posted)::text AS debits_posted,
              sum(credits_pending)::text AS credits_pending, sum(credits_posted)::text AS credits_posted
         FROM ledger_balances WHERE account_id = $1 HAVING count(*) > 0`,
      [accountId],
    );
    const row = rows[0];
    if (!row) return undefined;
    const totals = { debitsPending: BigInt(row.debits_pending), debitsPosted: BigInt(row.debits_posted), creditsPending: BigInt(row.credits_pending), creditsPosted: BigInt(row.credits_posted) };
    return { ...totals, posted: totals.creditsPosted - totals.debitsPosted };
  }

  /** By transfer id (number) or by idempotency key (string). */
  async function getTransfer(idOrIdempotencyKey: number | string): Promise<Transfer | undefined> {
    if (typeof idOrIdempotencyKey === 'number' && !Number.isSafeInteger(idOrIdempotencyKey)) return undefined;
    const column = typeof idOrIdempotencyKey === 'number' ? 't.id' : 't.idempotency_key';
    const { rows } = await pool.query<TransferRow>(`${SELECT_TRANSFER} WHERE ${column} = $1`, [idOrIdempotencyKey]);
    return rows[0] && toTransfer(rows[0]);
  }

  /** The id of the platform's account of this kind and currency. */
  function systemAccountId(kind: SystemAccountKind, currency: string): string {
    return `system:${kind}:${currency}`;
  }

  return { getAccount, getBalance, getTotals, getTransfer, systemAccountId };
}

export type LedgerReads = ReturnType<typeof ledgerReads>;
