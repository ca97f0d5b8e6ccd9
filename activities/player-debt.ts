import { isLedgerError, type Ledger } from '../ledger';
import type { Pool } from '../lib/db';

/**
 * A player's debt: what a chargeback took back beyond the player's available balance. It is recorded in
 * the player's receivable account (`system:receivable:<player id>`, kind player_receivable, which may go
 * below zero: that is the debt), so the player's own account never goes below zero. Later deposits repay it
 * (collectDebt after each credit); until it is repaid new payouts are declined (OUTSTANDING_DEBT).
 */
export function receivableAccountId(playerId: string): string {
  return `system:receivable:${playerId}`;
}

/** The player's outstanding debt in minor units (0 when none). */
export async function debtOf(ledger: Ledger, playerId: string): Promise<number> {
  const totals = await ledger.getTotals(receivableAccountId(playerId));
  if (!totals) return 0;
  const owed = totals.debitsPosted - totals.creditsPosted;
  return owed > 0n ? Number(owed) : 0;
}

export async function ensureReceivable(ledger: Ledger, playerId: string, currency: string): Promise<string> {
  const id = receivableAccountId(playerId);
  const created = await ledger.createAccount({ accountId: id, currency, kind: 'player_receivable' });
  if (created.result !== 'ok' && created.result !== 'exists') throw new Error(`ledger: receivable ${id} cannot be used: ${created.result}`);
  return id;
}

/**
 * Collects what the player owes from its available balance, at most the debt, as one transfer player →
 * receivable under `idempotencyKey`. Serialised per player by a session advisory lock, so two collections
 * never both take the same debt; a hold that lands between the read and the transfer makes the ledger
 * refuse it (insufficient_funds, nothing written, the key still free) and the amount is read again.
 * Returns the amount collected by this key (also on a retry after it was collected).
 */
export async function collectDebt(ledger: Ledger, pool: Pool, playerId: string, currency: string, idempotencyKey: string, metadata: Record<string, unknown>): Promise<number> {
  // Most players owe nothing: no lock, no further reads (a debt recorded this instant is collected by its own chargeback).
  if ((await debtOf(ledger, playerId)) === 0) return (await ledger.getTransfer(idempotencyKey))?.amount ?? 0;
  const client = await pool.connect();
  client.on('error', () => undefined);
  const lock = `player-debt:${playerId}`;
  await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [lock]);
  try {
    const earlier = await ledger.getTransfer(idempotencyKey);
    if (earlier) return earlier.amount;
    for (let attempt = 0; attempt < 5; attempt++) {
      const debt = await debtOf(ledger, playerId);
      const available = (await ledger.getBalance(playerId))?.available ?? 0;
      const amount = Math.min(debt, available);
      if (amount <= 0) return 0;
      const outcome = await ledger.transfer({ idempotencyKey, debitAccountId: playerId, creditAccountId: receivableAccountId(playerId), amount, currency, metadata });
      if (!isLedgerError(outcome)) return outcome.transfer.amount;
      if (outcome.result !== 'insufficient_funds') throw new Error(`ledger refused a debt collection: ${outcome.code}: ${outcome.detail}`);
    }
    return 0; // the balance keeps moving under us: the next deposit collects
  } finally {
    // A connection whose unlock failed may still hold the lock: it is closed, not returned to the pool.
    const unlocked = await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lock]).then(() => true, () => false);
    client.release(!unlocked);
  }
}
