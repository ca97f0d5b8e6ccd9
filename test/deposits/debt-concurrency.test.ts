import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDepositActivities, writeDepositState } from '../../activities/deposits';
import { debtOf } from '../../activities/player-debt';
import type { Ledger } from '../../ledger';
import type { Pool } from '../../lib/db';
import { moneyLimits } from '../../lib/limits';
import { loadConfig } from '../../lib/config';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { testPool, uniqueId, providerRegistry } from '../support';
import { expectInvariantsHold, ledgerFixture } from '../support/ledger';

/**
 * A chargeback racing the player's own deposits (each repaying what it owes) and payouts' holds, on the real
 * ledger and PostgreSQL, many rounds: whatever the interleaving, the player gives back exactly what was
 * charged back (collected now or later), never more, and its balance never goes below zero.
 */
describe('debt collection under concurrency', () => {
  let pool: Pool;
  let ledger: Ledger;
  let deposits: ReturnType<typeof createDepositActivities>;
  beforeAll(() => {
    ({ pool, ledger } = ledgerFixture(testPool()));
    deposits = createDepositActivities({ pool, ledger, providers: providerRegistry(pool, { sandbox: 'http://127.0.0.1:9' }), limits: moneyLimits(loadConfig({})) });
  });
  afterAll(async () => {
    await pool?.end();
  });

  /** A deposit credited as its saga would: its read-model row, then the credit (which repays any debt). */
  const credit = async (accountId: string, minor: number) => {
    const depositId = resourceIdFor('dp', accountId, uniqueId('k'));
    await writeDepositState(pool, { depositId, accountId, amountMinor: minor, currency: 'EUR', provider: 'sandbox', requestedAt: new Date().toISOString(), version: 5, status: 'CREDITED', stuck: false });
    await deposits.creditDeposit({ idempotencyKey: `${depositId}:credit`, depositId, accountId, amountMinor: minor, currency: 'EUR' });
    return depositId;
  };

  it('12 rounds: a chargeback racing 8 deposits and 6 holds, then 8 deposits worth more than the debt at once: exactly the charged-back amount is collected', async () => {
    for (let round = 0; round < 12; round++) {
      const accountId = uniqueId('player');
      expect((await ledger.createAccount({ accountId, currency: 'EUR', kind: 'player' })).result).toBe('ok');
      const charged = await credit(accountId, 10_000);
      // Part of it already spent, so the chargeback cannot be covered by the balance alone.
      const inFlight = await ledger.ensureSystemAccount('payouts_in_flight', 'EUR');
      expect((await ledger.transfer({ idempotencyKey: uniqueId('spend'), debitAccountId: accountId, creditAccountId: inFlight.id, amount: 7_000, currency: 'EUR' })).result).toBe('ok');

      const depositsMinor = Array.from({ length: 8 }, (_, i) => 300 + i * 50 + round);
      const results = await Promise.all([
        deposits.chargeBackDeposit({ depositId: charged, reason: 'chargeback', source: 'provider' }),
        ...depositsMinor.map((minor) => credit(accountId, minor)),
        ...Array.from({ length: 6 }, () => ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: accountId, creditAccountId: inFlight.id, amount: 200, currency: 'EUR' })),
      ]);
      expect(results[0]).toMatchObject({ outcome: 'reversed', amount: 10_000 });
      // Then deposits worth more than what is still owed, all at once: together they must repay it exactly, not more.
      const repaying = Array.from({ length: 8 }, () => 1_500);
      await Promise.all(repaying.map((minor) => credit(accountId, minor)));
      depositsMinor.push(...repaying);

      const { rows } = await pool.query<{ step: string; amount: string }>(
        "SELECT metadata->>'step' AS step, amount FROM ledger_transfers WHERE metadata->>'step' IN ('chargeback', 'debt_collected') AND (debit_account_id = $1 OR credit_account_id = $1 OR debit_account_id = $2)",
        [accountId, `system:receivable:${accountId}`],
      );
      const chargedBack = rows.filter((r) => r.step === 'chargeback').reduce((sum, r) => sum + Number(r.amount), 0);
      const collected = rows.filter((r) => r.step === 'debt_collected').reduce((sum, r) => sum + Number(r.amount), 0);
      const debt = await debtOf(ledger, accountId);
      expect([round, chargedBack]).toEqual([round, 10_000]);
      expect([round, collected, debt]).toEqual([round, 10_000, 0]);
      const balance = (await ledger.getBalance(accountId))!;
      expect(balance.available).toBeGreaterThanOrEqual(0);
      // Holds do not move posted money: what the player had (3,000 and its deposits) less what it gave back.
      expect([round, balance.posted]).toEqual([round, 3_000 + depositsMinor.reduce((a, b) => a + b, 0) - collected]);
      // A debt remains only when nothing was left to collect.
      if (debt > 0) expect([round, balance.available]).toEqual([round, 0]);
    }
    await expectInvariantsHold(pool);
  });
});
