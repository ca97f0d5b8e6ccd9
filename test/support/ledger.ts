import { expect } from 'vitest';
import type { Pool } from '../../lib/db';
import { checkInvariants, createLedger, type Ledger, type TransferResult } from '../../ledger';
import { uniqueId } from './index';

export interface LedgerFixture {
  pool: Pool;
  ledger: Ledger;
  /** SQLSTATEs of commands the ledger had to re-run; the locking design means there should be none. */
  retries: string[];
}

export function ledgerFixture(pool: Pool): LedgerFixture {
  const retries: string[] = [];
  return { pool, ledger: createLedger(pool, { onRetry: (s) => retries.push(s) }), retries };
}

/** A fresh player account credited with `amount` from a funding account of its own. */
export async function fundedPlayer(ledger: Ledger, currency: string, amount: number): Promise<{ player: string; funding: string }> {
  const player = uniqueId('player');
  const funding = uniqueId('funding');
  expect((await ledger.createAccount({ accountId: player, currency, kind: 'player' })).result).toBe('ok');
  expect((await ledger.createAccount({ accountId: funding, currency, kind: 'operator_funding' })).result).toBe('ok');
  if (amount > 0) {
    const funded = await ledger.transfer({ idempotencyKey: uniqueId('fund'), debitAccountId: funding, creditAccountId: player, amount, currency });
    expect(funded.result).toBe('ok');
  }
  return { player, funding };
}

export async function newAccount(ledger: Ledger, kind: 'player' | 'payouts_in_flight' | 'provider_clearing' | 'fees' | 'operator_funding', currency: string): Promise<string> {
  const id = uniqueId(kind.replaceAll('_', '-'));
  expect((await ledger.createAccount({ accountId: id, currency, kind })).result).toBe('ok');
  return id;
}

export async function expectInvariantsHold(pool: Pool): Promise<void> {
  const report = await checkInvariants(pool);
  expect(report.violations).toEqual([]);
  expect(report.ok).toBe(true);
}

/** Narrows a result to a transfer, failing the test with the refusal otherwise. */
export function transferOf(outcome: TransferResult) {
  if (!('transfer' in outcome)) throw new Error(`expected a transfer, got ${outcome.result}: ${outcome.detail}`);
  return outcome.transfer;
}
