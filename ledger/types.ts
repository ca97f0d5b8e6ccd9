/** Public vocabulary of the ledger (after TigerBeetle): accounts, transfers, result codes. */

export const ACCOUNT_KINDS = ['player', 'provider_clearing', 'payouts_in_flight', 'deposits_in_flight', 'fees', 'operator_funding', 'player_receivable'] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];
/** Kinds the platform owns, one account per currency: `system:<kind>:<currency>`. */
export type SystemAccountKind = Exclude<AccountKind, 'player'>;

/** 1-128 characters of letters, digits, `.`, `_`, `:` and `-`. Player ids may not start with `system:`. */
export const ACCOUNT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 512;
/** Serialized size limit of a transfer's metadata object. */
export const MAX_METADATA_BYTES = 16 * 1024;

export type Metadata = Record<string, unknown>;

export interface Account {
  id: string;
  currency: string;
  kind: AccountKind;
  /** Available balance (credits posted − debits posted − debits pending) may never go below zero. Always true for players. */
  debitsMustNotExceedCredits: boolean;
  createdAt: string;
}

/** The API's balance shape, in minor units: posted = credits − debits posted, held = debits pending, available = posted − held. */
export interface Balance {
  account_id: string;
  currency: string;
  available: number;
  held: number;
  posted: number;
}

/** An account's exact running totals in minor units (numeric(39,0) in the database), with posted = credits − debits posted. */
export interface AccountTotals {
  debitsPending: bigint;
  debitsPosted: bigint;
  creditsPending: bigint;
  creditsPosted: bigint;
  posted: bigint;
}

export type TransferKind = 'transfer' | 'hold' | 'post' | 'void' | 'refund';
/** Holds are 'pending' until a post or void names them; every other kind is final when written. */
export type TransferState = 'pending' | 'posted' | 'voided';

export interface Transfer {
  id: number;
  idempotencyKey: string;
  kind: TransferKind;
  /** Current state: derived for holds (pending → posted | voided), fixed for every other kind. */
  state: TransferState;
  debitAccountId: string;
  creditAccountId: string;
  amount: number;
  currency: string;
  /** The hold a post or void resolves. */
  pendingId: number | null;
  /** The posted transfer a refund reverses. */
  refundOfId: number | null;
  /** For a hold: the post or void transfer that resolved it. */
  resolvedById: number | null;
  metadata: Metadata;
  createdAt: string;
}

// ---- inputs ----------------------------------------------------------------------------------------

export interface CreateAccountInput {
  accountId: string;
  currency: string;
  kind: AccountKind;
  /** Only for non-player kinds (players always have it); default false. */
  debitsMustNotExceedCredits?: boolean;
}

interface CommandBase {
  /** Unique forever across all ledger commands; a repeat returns the original transfer. */
  idempotencyKey: string;
  /** Saga annotations (workflow id, step, ...). Not part of the idempotency comparison; the first write wins. */
  metadata?: Metadata;
}

/** transfer (posted at once) and hold (pending) move `amount` from the debit to the credit account. */
export interface MovementInput extends CommandBase {
  debitAccountId: string;
  creditAccountId: string;
  amount: number;
  currency: string;
}

export interface PostInput extends CommandBase {
  pendingId: number;
  /** At most the held amount; the rest of the hold is released. Default: the whole hold. */
  amount?: number;
}

export interface VoidInput extends CommandBase {
  pendingId: number;
}

export interface RefundInput extends CommandBase {
  /** A posted transfer (kind transfer or post) to reverse, in part or whole. */
  transferId: number;
  /** Default: the whole original amount. All refunds of one transfer together never exceed it. */
  amount?: number;
}

// ---- results ---------------------------------------------------------------------------------------

/**
 * Every refusal of a transfer command, in precedence order (after TigerBeetle): when several apply, the
 * first in this list is the one returned. Checks of the command alone come first, then the idempotency
 * key (a repeat is answered before anything about the current state), then accounts, holds, refunds, funds.
 */
export const TRANSFER_ERROR_CODES = [
  'invalid_idempotency_key',
  'invalid_metadata',
  'same_account',
  'invalid_amount',
  'unknown_currency',
  'exists_with_different_kind',
  'exists_with_different_debit_account_id',
  'exists_with_different_credit_account_id',
  'exists_with_different_pending_id',
  'exists_with_different_refund_of_id',
  'exists_with_different_amount',
  'exists_with_different_currency',
  'debit_account_not_found',
  'credit_account_not_found',
  'currency_mismatch',
  'pending_transfer_not_found',
  'pending_transfer_not_pending',
  'pending_transfer_already_posted',
  'pending_transfer_already_voided',
  'exceeds_pending_transfer_amount',
  'transfer_not_found',
  'transfer_not_refundable',
  'refund_exceeds_original',
  'insufficient_funds',
  'overflows_debits',
  'overflows_credits',
] as const;
export type TransferErrorCode = (typeof TRANSFER_ERROR_CODES)[number];

/** Business refusals are values, never exceptions; `code` is the stable API problem code (e.g. INSUFFICIENT_FUNDS). */
export interface LedgerError<C extends string = TransferErrorCode> {
  result: C;
  code: Uppercase<C>;
  detail: string;
}

/**
 * 'ok': this call moved the money. 'exists': an earlier call with this key and these parameters did; nothing
 * moved now. 'exists_with_different_*': the key was used for another command; nothing moved.
 */
export type TransferResult = { result: 'ok' | 'exists'; transfer: Transfer } | LedgerError;

export type CreateAccountErrorCode = 'unknown_currency' | 'invalid_account_id' | 'invalid_account_kind' | 'invalid_flags';
export type CreateAccountResult =
  | { result: 'ok' | 'exists'; account: Account }
  | { result: 'exists_with_different_currency' | 'exists_with_different_kind' | 'exists_with_different_flags'; account: Account }
  | LedgerError<CreateAccountErrorCode>;

export function ledgerError<C extends string>(result: C, detail: string): LedgerError<C> {
  return { result, code: result.toUpperCase() as Uppercase<C>, detail };
}

export function isLedgerError<T extends { result: string }>(outcome: T): outcome is Extract<T, { detail: string }> {
  return 'detail' in outcome;
}
