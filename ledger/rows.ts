import type { Queryable } from './db';
import type { Account, AccountKind, Metadata, Transfer, TransferKind, TransferState } from './types';

// The ledger's rows and their public shapes, shared by its reads and its commands.

export const SELECT_TRANSFER = `
  SELECT t.*, r.id AS resolved_by_id, r.kind AS resolved_by_kind
    FROM ledger_transfers t LEFT JOIN ledger_transfers r ON r.pending_id = t.id`;

export interface TransferRow {
  id: number;
  idempotency_key: string;
  request_fingerprint: string;
  kind: TransferKind;
  state: TransferState;
  debit_account_id: string;
  credit_account_id: string;
  amount: number;
  currency: string;
  pending_id: number | null;
  refund_of_id: number | null;
  metadata: Metadata;
  created_at: Date;
  resolved_by_id: number | null;
  resolved_by_kind: TransferKind | null;
}

export function toTransfer(row: TransferRow): Transfer {
  const state: TransferState = row.resolved_by_kind === 'post' ? 'posted' : row.resolved_by_kind === 'void' ? 'voided' : row.state;
  return {
    id: row.id,
    idempotencyKey: row.idempotency_key,
    kind: row.kind,
    state,
    debitAccountId: row.debit_account_id,
    creditAccountId: row.credit_account_id,
    amount: row.amount,
    currency: row.currency,
    pendingId: row.pending_id,
    refundOfId: row.refund_of_id,
    resolvedById: row.resolved_by_id,
    metadata: row.metadata,
    createdAt: row.created_at.toISOString(),
  };
}

export interface AccountRow {
  id: string;
  currency: string;
  kind: AccountKind;
  debits_must_not_exceed_credits: boolean;
  created_at: Date;
}

export function toAccount(row: AccountRow): Account {
  return {
    id: row.id,
    currency: row.currency,
    kind: row.kind,
    debitsMustNotExceedCredits: row.debits_must_not_exceed_credits,
    createdAt: row.created_at.toISOString(),
  };
}

export async function readTransfer(db: Queryable, id: number): Promise<Transfer | undefined> {
  const { rows } = await db.query<TransferRow>(`${SELECT_TRANSFER} WHERE t.id = $1`, [id]);
  return rows[0] && toTransfer(rows[0]);
}
