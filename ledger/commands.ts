import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from '../lib/db';
import { isKnownCurrency, isValidMinorAmount } from './currency';
import { runCommand } from './db';
import { insertOutboxEvent } from './outbox-events';
import type { LedgerReads } from './reads';
import { readTransfer, SELECT_TRANSFER, toAccount, toTransfer, type AccountRow, type TransferRow } from './rows';
import {
  ACCOUNT_ID_PATTERN,
  ACCOUNT_KINDS,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  MAX_METADATA_BYTES,
  ledgerError,
  type Account,
  type CreateAccountInput,
  type CreateAccountResult,
  type LedgerError,
  type Metadata,
  type MovementInput,
  type PostInput,
  type RefundInput,
  type SystemAccountKind,
  type TransferKind,
  type TransferResult,
  type TransferState,
  type VoidInput,
} from './types';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Largest account total (debits or credits): numeric(39,0), see migrations/0012_ledger_wide_totals.sql. */
const MAX_TOTAL = 10n ** 39n - 1n;

export interface LedgerOptions {
  /** Called when a command is re-run after a deadlock, serialization failure or unique violation (none expected; for metrics and tests). */
  onRetry?: (sqlState: string) => void;
}

/**
 * Concurrency design. Every command runs in one transaction that
 *  1. takes a transaction-scoped advisory lock on its idempotency key, then looks the key up. Concurrent
 *     duplicates queue on that lock, so the second one sees the first one's committed row and answers
 *     'exists' (or how it differs: exists_with_different_*) instead of racing it; the UNIQUE key (with ON CONFLICT DO
 *     NOTHING) stays the final guarantee;
 *  2. locks what its decision depends on with SELECT ... FOR UPDATE: the balance row of each account that
 *     must not overdraw (transfer, hold, refund), the hold (post, void: one resolution at a time), the
 *     refunded transfer (refund: the refunded sum cannot change under us);
 *  3. decides on the values read under those locks and inserts the transfer, whose trigger moves the
 *     balances; the locks are released at COMMIT, so check and update are one atomic step.
 * Why a locked read rather than a conditional `UPDATE ... WHERE available >= amount`: both are race-free,
 * but the UPDATE answers only "0 rows", while the locked read says exactly why a command is refused
 * (missing account, other currency, insufficient funds, overflow), and post/void/refund must read earlier
 * transfers under a lock anyway. The CHECK ledger_balances_no_overdraft backs it up: even a bug here cannot
 * commit an overdraft.
 * Deadlocks: balance rows are always locked in one global order (accounts that must not overdraw first,
 * then the others, each by account id; see the trigger), so opposite-direction transfers cannot deadlock.
 * System accounts (which may go negative) are never locked for a check: their balance is spread over
 * slots (see the migration), so concurrent payouts do not queue behind one hot row.
 */
export function ledgerCommands(pool: Pool, reads: LedgerReads, options: LedgerOptions = {}) {
  const { getAccount, systemAccountId } = reads;
  const knownSystemAccounts = new Map<string, Account>();
  const inTransaction = <T extends { result: string }>(command: (db: PoolClient) => Promise<T>) => runCommand(pool, command, options.onRetry);

  async function createAccount(input: CreateAccountInput): Promise<CreateAccountResult> {
    const { accountId, currency, kind } = input;
    if (typeof accountId !== 'string' || !ACCOUNT_ID_PATTERN.test(accountId)) {
      return ledgerError('invalid_account_id', 'account ids are 1-128 characters of A-Z a-z 0-9 . _ : -');
    }
    if (!(ACCOUNT_KINDS as readonly string[]).includes(kind)) {
      return ledgerError('invalid_account_kind', `kind must be one of ${ACCOUNT_KINDS.join(', ')}`);
    }
    if (kind === 'player' && accountId.startsWith('system:')) {
      return ledgerError('invalid_account_id', 'the system: prefix is reserved for system accounts');
    }
    if (!isKnownCurrency(currency)) return ledgerError('unknown_currency', `${String(currency)} is not an ISO 4217 currency with a minor unit`);
    if (kind === 'player' && input.debitsMustNotExceedCredits === false) {
      return ledgerError('invalid_flags', 'player accounts may never overdraw');
    }
    const mustNotOverdraw = kind === 'player' || input.debitsMustNotExceedCredits === true;

    // One statement, so the account never exists without its balance rows.
    const { rows } = await pool.query<AccountRow>(
      `WITH created AS (
         INSERT INTO ledger_accounts (id, currency, kind, debits_must_not_exceed_credits) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING
         RETURNING *
       ), balance AS (
         INSERT INTO ledger_balances (account_id, slot, currency, debits_must_not_exceed_credits)
         SELECT id, slot, currency, debits_must_not_exceed_credits
           FROM created, generate_series(0, CASE WHEN debits_must_not_exceed_credits THEN 0 ELSE ledger_balance_slots() - 1 END) AS slot
       )
       SELECT * FROM created`,
      [accountId, currency, kind, mustNotOverdraw],
    );
    if (rows[0]) return { result: 'ok', account: toAccount(rows[0]) };

    const existing = await getAccount(accountId);
    if (!existing) throw new Error(`ledger: account ${accountId} conflicted but cannot be read`);
    if (existing.currency !== currency) return { result: 'exists_with_different_currency', account: existing };
    if (existing.kind !== kind) return { result: 'exists_with_different_kind', account: existing };
    if (existing.debitsMustNotExceedCredits !== mustNotOverdraw) return { result: 'exists_with_different_flags', account: existing };
    return { result: 'exists', account: existing };
  }

  /** Gets or creates the platform's account of this kind and currency (may go negative: it mirrors the outside world). */
  async function ensureSystemAccount(kind: SystemAccountKind, currency: string): Promise<Account> {
    const id = systemAccountId(kind, currency);
    const cached = knownSystemAccounts.get(id);
    if (cached) return cached;
    const created = await createAccount({ accountId: id, currency, kind });
    if (created.result !== 'ok' && created.result !== 'exists') {
      throw new Error(`ledger: system account ${id} cannot be used: ${created.result}`);
    }
    knownSystemAccounts.set(id, created.account);
    return created.account;
  }

  /** Moves money at once (posted). */
  function transfer(input: MovementInput): Promise<TransferResult> {
    return movement('transfer', input);
  }

  /** Reserves money (pending): counts against the debit account's available balance until posted or voided. */
  function hold(input: MovementInput): Promise<TransferResult> {
    return movement('hold', input);
  }

  async function movement(kind: 'transfer' | 'hold', input: MovementInput): Promise<TransferResult> {
    const invalid =
      checkCommon(input) ??
      (input.debitAccountId === input.creditAccountId ? ledgerError('same_account', 'debit and credit account must differ') : undefined) ??
      checkAmount(input.amount) ??
      checkCurrency(input.currency);
    if (invalid) return invalid;
    const { idempotencyKey, debitAccountId, creditAccountId, amount, currency } = input;
    const fingerprint = fingerprintOf({ command: kind, debitAccountId, creditAccountId, amount, currency });

    return inTransaction(async (db) => {
      const earlier = await claimIdempotencyKey(db, { idempotencyKey, fingerprint, kind, debitAccountId, creditAccountId, amount, currency });
      if (earlier) return earlier;
      const balances = await lockAccounts(db, [debitAccountId, creditAccountId]);
      const debit = balances.get(debitAccountId);
      const credit = balances.get(creditAccountId);
      if (!debit) return ledgerError('debit_account_not_found', `no account ${debitAccountId}`);
      if (!credit) return ledgerError('credit_account_not_found', `no account ${creditAccountId}`);
      const refused = checkCurrencies(currency, debit, credit) ?? checkFunds(debit, amount) ?? checkOverflow(debit, credit, amount);
      if (refused) return refused;
      return insertTransfer(db, { idempotencyKey, fingerprint, kind, debitAccountId, creditAccountId, amount, currency, metadata: input.metadata });
    });
  }

  /** Settles a hold, wholly or in part (the rest is released). */
  function post(input: PostInput): Promise<TransferResult> {
    const invalid = checkCommon(input) ?? (input.amount === undefined ? undefined : checkAmount(input.amount));
    if (invalid) return Promise.resolve(invalid);
    return resolvePending('post', input, input.amount);
  }

  /** Releases a hold in full. */
  function voidPending(input: VoidInput): Promise<TransferResult> {
    const invalid = checkCommon(input);
    if (invalid) return Promise.resolve(invalid);
    return resolvePending('void', input, undefined);
  }

  async function resolvePending(kind: 'post' | 'void', input: PostInput | VoidInput, requestedAmount: number | undefined): Promise<TransferResult> {
    const { idempotencyKey, pendingId } = input;
    const fingerprint = fingerprintOf({ command: kind, pendingId, amount: requestedAmount ?? null });

    return inTransaction(async (db) => {
      const earlier = await claimIdempotencyKey(db, { idempotencyKey, fingerprint, kind, pendingId, amount: requestedAmount });
      if (earlier) return earlier;
      if (!Number.isSafeInteger(pendingId) || pendingId <= 0) return ledgerError('pending_transfer_not_found', `no transfer ${String(pendingId)}`);
      // Every post or void of this hold takes this lock first, so the resolution read next is final.
      // (NO KEY UPDATE: the row stays untouched and foreign keys pointing at it are not blocked.)
      const locked = await db.query('SELECT 1 FROM ledger_transfers WHERE id = $1 FOR NO KEY UPDATE', [pendingId]);
      if (locked.rowCount === 0) return ledgerError('pending_transfer_not_found', `no transfer ${pendingId}`);
      const pending = (await readTransfer(db, pendingId))!;
      if (pending.kind !== 'hold') return ledgerError('pending_transfer_not_pending', `transfer ${pendingId} is a ${pending.kind}, not a hold`);
      if (pending.state === 'posted') return ledgerError('pending_transfer_already_posted', `hold ${pendingId} was posted by transfer ${pending.resolvedById}`);
      if (pending.state === 'voided') return ledgerError('pending_transfer_already_voided', `hold ${pendingId} was voided by transfer ${pending.resolvedById}`);
      const amount = requestedAmount ?? pending.amount;
      if (amount > pending.amount) {
        return ledgerError('exceeds_pending_transfer_amount', `post of ${amount} exceeds hold ${pendingId} of ${pending.amount}`);
      }
      // The player's balance row is locked before the transfer takes its id, as every other command does, so
      // a player's transfer ids are in the order they apply (the statement pages by id and must not skip one).
      // Same lock order as before: the hold's row, then the balance row (the trigger took it after the insert).
      await lockAccounts(db, [pending.debitAccountId, pending.creditAccountId]);
      return insertTransfer(db, {
        idempotencyKey,
        fingerprint,
        kind,
        debitAccountId: pending.debitAccountId,
        creditAccountId: pending.creditAccountId,
        amount,
        currency: pending.currency,
        pendingId,
        metadata: input.metadata,
      });
    });
  }

  /** Reverses (part of) a posted transfer: a new transfer in the opposite direction naming the original. */
  async function refund(input: RefundInput): Promise<TransferResult> {
    const invalid = checkCommon(input) ?? (input.amount === undefined ? undefined : checkAmount(input.amount));
    if (invalid) return invalid;
    const { idempotencyKey, transferId } = input;
    const fingerprint = fingerprintOf({ command: 'refund', transferId, amount: input.amount ?? null });

    return inTransaction(async (db) => {
      const earlier = await claimIdempotencyKey(db, { idempotencyKey, fingerprint, kind: 'refund', refundOfId: transferId, amount: input.amount });
      if (earlier) return earlier;
      if (!Number.isSafeInteger(transferId) || transferId <= 0) return ledgerError('transfer_not_found', `no transfer ${String(transferId)}`);
      const original = await readTransfer(db, transferId);
      if (!original) return ledgerError('transfer_not_found', `no transfer ${transferId}`);
      if (original.kind !== 'transfer' && original.kind !== 'post') {
        return ledgerError('transfer_not_refundable', `transfer ${transferId} is a ${original.kind}; only posted transfers (transfer, post) can be refunded`);
      }
      const balances = await lockAccounts(db, [original.creditAccountId, original.debitAccountId]);
      const debit = balances.get(original.creditAccountId);
      const credit = balances.get(original.debitAccountId);
      if (!debit || !credit) throw new Error(`ledger: accounts of transfer ${transferId} are missing`);
      // Every refund of this transfer takes this lock (after the balance locks), so the sum read next is final.
      await db.query('SELECT 1 FROM ledger_transfers WHERE id = $1 FOR NO KEY UPDATE', [transferId]);
      const { rows } = await db.query<{ refunded: number }>(
        'SELECT coalesce(sum(amount), 0)::bigint AS refunded FROM ledger_transfers WHERE refund_of_id = $1',
        [transferId],
      );
      const refunded = rows[0]?.refunded ?? 0;
      const amount = input.amount ?? original.amount;
      if (refunded + amount > original.amount) {
        return ledgerError('refund_exceeds_original', `transfer ${transferId} of ${original.amount} has ${refunded} refunded; ${amount} more exceeds it`);
      }
      const refused = checkFunds(debit, amount) ?? checkOverflow(debit, credit, amount);
      if (refused) return refused;
      return insertTransfer(db, {
        idempotencyKey,
        fingerprint,
        kind: 'refund',
        debitAccountId: original.creditAccountId,
        creditAccountId: original.debitAccountId,
        amount,
        currency: original.currency,
        refundOfId: transferId,
        metadata: input.metadata,
      });
    });
  }

  return { createAccount, ensureSystemAccount, transfer, hold, post, void: voidPending, refund };
}

// ---- validation -------------------------------------------------------------------------------------

function checkCommon(input: { idempotencyKey: string; metadata?: Metadata }): LedgerError | undefined {
  const key: unknown = input.idempotencyKey;
  // Control characters are refused so keys stay printable in logs and UIs.
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH || /\p{Cc}/u.test(key)) {
    return ledgerError('invalid_idempotency_key', `idempotency keys are 1-${MAX_IDEMPOTENCY_KEY_LENGTH} characters without control characters`);
  }
  if (input.metadata !== undefined) {
    const m: unknown = input.metadata;
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return ledgerError('invalid_metadata', 'metadata must be a JSON object');
    let serialized: string;
    try {
      serialized = JSON.stringify(m);
    } catch {
      return ledgerError('invalid_metadata', 'metadata must be serializable as JSON');
    }
    if (Buffer.byteLength(serialized) > MAX_METADATA_BYTES) return ledgerError('invalid_metadata', `metadata exceeds ${MAX_METADATA_BYTES} bytes`);
  }
  return undefined;
}

function checkAmount(amount: unknown): LedgerError | undefined {
  if (isValidMinorAmount(amount)) return undefined;
  return ledgerError('invalid_amount', `amount must be a positive integer of minor units up to ${Number.MAX_SAFE_INTEGER}, got ${String(amount)}`);
}

function checkCurrency(currency: unknown): LedgerError | undefined {
  if (isKnownCurrency(currency)) return undefined;
  return ledgerError('unknown_currency', `${String(currency)} is not an ISO 4217 currency with a minor unit`);
}

function checkCurrencies(currency: string, debit: LockedBalance, credit: LockedBalance): LedgerError | undefined {
  for (const account of [debit, credit]) {
    if (account.currency !== currency) {
      return ledgerError('currency_mismatch', `account ${account.id} holds ${account.currency}, the transfer is in ${currency}`);
    }
  }
  return undefined;
}

function checkFunds(debit: LockedBalance, amount: number): LedgerError | undefined {
  if (!debit.mustNotOverdraw) return undefined;
  const available = debit.creditsPosted - debit.debitsPosted - debit.debitsPending;
  if (available >= BigInt(amount)) return undefined;
  return ledgerError('insufficient_funds', `account ${debit.id} has ${available} ${debit.currency} minor units available, ${amount} needed`);
}

/**
 * TigerBeetle's overflow results: an account's totals are u128-like (numeric(39,0)), so in practice only an
 * account that must not overdraw (a player) is refused, when its balance would stop being a safe integer.
 */
function checkOverflow(debit: LockedBalance, credit: LockedBalance, amount: number): LedgerError | undefined {
  const a = BigInt(amount);
  if (debit.debitsPosted + debit.debitsPending + a > MAX_TOTAL) return ledgerError('overflows_debits', `debits of ${debit.id} would exceed ${MAX_TOTAL}`);
  if (credit.creditsPosted + credit.creditsPending + a > MAX_TOTAL) return ledgerError('overflows_credits', `credits of ${credit.id} would exceed ${MAX_TOTAL}`);
  if (credit.mustNotOverdraw && credit.creditsPosted + credit.creditsPending - credit.debitsPosted + a > MAX_SAFE) {
    return ledgerError('overflows_credits', `the balance of ${credit.id} would exceed ${MAX_SAFE}`);
  }
  return undefined;
}

/** sha256 of the command's canonical parameters (fixed key order; metadata excluded). */
function fingerprintOf(params: Record<string, string | number | null>): string {
  return createHash('sha256').update(JSON.stringify(params)).digest('hex');
}

// ---- SQL ----------------------------------------------------------------------------------------------

/**
 * Serialises commands carrying the same key, then looks the key up. Must be two statements: in READ
 * COMMITTED a statement's snapshot is taken before it waits for the lock, so one combined statement
 * could miss the row the lock holder just committed.
 */
async function claimIdempotencyKey(db: PoolClient, requested: RequestedTransfer): Promise<TransferResult | undefined> {
  await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 4217))', [requested.idempotencyKey]);
  const { rows } = await db.query<TransferRow>(`${SELECT_TRANSFER} WHERE t.idempotency_key = $1`, [requested.idempotencyKey]);
  return rows[0] && repeatOutcome(rows[0], requested);
}

/** What a command asks for, as far as it names it (a post may leave its amount to the hold's). */
interface RequestedTransfer {
  idempotencyKey: string;
  /** Of the command's own parameters: the authority on whether a repeat is the same command. */
  fingerprint: string;
  kind: TransferKind;
  debitAccountId?: string;
  creditAccountId?: string;
  pendingId?: number;
  refundOfId?: number;
  amount?: number;
  currency?: string;
}

/** The fields a repeat is compared on, in the precedence of their exists_with_different_* results. */
const REPEAT_FIELDS = [
  ['kind', 'kind', 'exists_with_different_kind'],
  ['debitAccountId', 'debit_account_id', 'exists_with_different_debit_account_id'],
  ['creditAccountId', 'credit_account_id', 'exists_with_different_credit_account_id'],
  ['pendingId', 'pending_id', 'exists_with_different_pending_id'],
  ['refundOfId', 'refund_of_id', 'exists_with_different_refund_of_id'],
  ['amount', 'amount', 'exists_with_different_amount'],
  ['currency', 'currency', 'exists_with_different_currency'],
] as const;

/**
 * A key already used: 'exists' with the original transfer when the command is the same, else the first
 * field that differs (TigerBeetle's exists_with_different_* family). Same named fields but another
 * fingerprint is a post that names the amount where the first left it to the hold (or the reverse).
 */
function repeatOutcome(row: TransferRow, requested: RequestedTransfer): TransferResult {
  if (row.request_fingerprint === requested.fingerprint) return { result: 'exists', transfer: toTransfer(row) };
  for (const [field, column, result] of REPEAT_FIELDS) {
    const wanted = requested[field];
    if (wanted !== undefined && String(wanted) !== String(row[column])) {
      return ledgerError(result, `idempotency key was used for ${row.kind} ${row.id} with ${column} ${String(row[column])}, not ${String(wanted)}`);
    }
  }
  return ledgerError('exists_with_different_amount', `idempotency key was used for ${row.kind} ${row.id} ${requested.amount === undefined ? 'with an explicit amount' : 'leaving the amount to the hold'}`);
}

interface LockedBalance {
  id: string;
  currency: string;
  mustNotOverdraw: boolean;
  debitsPending: bigint;
  debitsPosted: bigint;
  creditsPending: bigint;
  creditsPosted: bigint;
}

/**
 * Reads the accounts and their balances, locking the balance row of each account that must not overdraw
 * (in account-id order; see createLedger). Those values are current as of the lock. The spread balances
 * of other accounts are read without a lock: they are used only for the overflow check, which for them
 * is therefore approximate under concurrency (each slot row is still capped by a CHECK).
 */
async function lockAccounts(db: PoolClient, accountIds: string[]): Promise<Map<string, LockedBalance>> {
  const { rows } = await db.query<{
    id: string;
    currency: string;
    must_not_overdraw: boolean;
    debits_pending: string;
    debits_posted: string;
    credits_pending: string;
    credits_posted: string;
  }>(
    `WITH locked AS MATERIALIZED (
       SELECT account_id, debits_pending, debits_posted, credits_pending, credits_posted
         FROM ledger_balances
        WHERE account_id = ANY($1::text[]) AND slot = 0 AND debits_must_not_exceed_credits
        ORDER BY account_id
          FOR UPDATE
     ), spread AS (
       SELECT account_id, sum(debits_pending) AS debits_pending, sum(debits_posted) AS debits_posted,
              sum(credits_pending) AS credits_pending, sum(credits_posted) AS credits_posted
         FROM ledger_balances
        WHERE account_id = ANY($1::text[]) AND NOT debits_must_not_exceed_credits
        GROUP BY account_id
     )
     SELECT a.id, a.currency, a.debits_must_not_exceed_credits AS must_not_overdraw,
            coalesce(l.debits_pending, s.debits_pending, 0)::text AS debits_pending,
            coalesce(l.debits_posted, s.debits_posted, 0)::text AS debits_posted,
            coalesce(l.credits_pending, s.credits_pending, 0)::text AS credits_pending,
            coalesce(l.credits_posted, s.credits_posted, 0)::text AS credits_posted
       FROM ledger_accounts a
       LEFT JOIN locked l ON l.account_id = a.id
       LEFT JOIN spread s ON s.account_id = a.id
      WHERE a.id = ANY($1::text[])`,
    [accountIds],
  );
  return new Map(
    rows.map((r) => [
      r.id,
      {
        id: r.id,
        currency: r.currency,
        mustNotOverdraw: r.must_not_overdraw,
        debitsPending: BigInt(r.debits_pending),
        debitsPosted: BigInt(r.debits_posted),
        creditsPending: BigInt(r.credits_pending),
        creditsPosted: BigInt(r.credits_posted),
      },
    ]),
  );
}

interface NewTransfer {
  idempotencyKey: string;
  fingerprint: string;
  kind: TransferKind;
  debitAccountId: string;
  creditAccountId: string;
  amount: number;
  currency: string;
  pendingId?: number;
  refundOfId?: number;
  metadata: Metadata | undefined;
}

async function insertTransfer(db: PoolClient, t: NewTransfer): Promise<TransferResult> {
  const state: TransferState = t.kind === 'hold' ? 'pending' : t.kind === 'void' ? 'voided' : 'posted';
  const { rows } = await db.query<TransferRow>(
    `INSERT INTO ledger_transfers
       (idempotency_key, request_fingerprint, kind, state, debit_account_id, credit_account_id, amount, currency, pending_id, refund_of_id, metadata)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING *, NULL::bigint AS resolved_by_id, NULL::text AS resolved_by_kind`,
    [
      t.idempotencyKey,
      t.fingerprint,
      t.kind,
      state,
      t.debitAccountId,
      t.creditAccountId,
      t.amount,
      t.currency,
      t.pendingId ?? null,
      t.refundOfId ?? null,
      JSON.stringify(t.metadata ?? {}),
    ],
  );
  if (rows[0]) {
    const transfer = toTransfer(rows[0]);
    // Transactional outbox: the event commits or rolls back with the transfer.
    await insertOutboxEvent(db, transfer);
    return { result: 'ok', transfer };
  }
  // Only reachable if a writer bypassed the advisory lock; nothing was written, the caller rolls back.
  const { rows: existing } = await db.query<TransferRow>(`${SELECT_TRANSFER} WHERE t.idempotency_key = $1`, [t.idempotencyKey]);
  if (!existing[0]) throw new Error(`ledger: idempotency key conflicted but no transfer found`);
  return repeatOutcome(existing[0], { ...t, idempotencyKey: t.idempotencyKey });
}

