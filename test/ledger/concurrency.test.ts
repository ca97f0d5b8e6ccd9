import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger, TransferResult } from '../../ledger';
import type { Pool } from '../../lib/db';
import { testPool, uniqueId } from '../support';
import { expectInvariantsHold, fundedPlayer, ledgerFixture, newAccount, transferOf } from '../support/ledger';

let pool: Pool;
let ledger: Ledger;
let retries: string[];

beforeAll(() => {
  ({ pool, ledger, retries } = ledgerFixture(testPool()));
});
afterEach(async () => {
  await expectInvariantsHold(pool);
  // No deadlock, serialization failure or key race was ever resolved by re-running a command.
  expect(retries).toEqual([]);
});
afterAll(async () => {
  await pool?.end();
});

function countResults(outcomes: TransferResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o.result] = (counts[o.result] ?? 0) + 1;
  return counts;
}

describe('concurrent commands', () => {
  it('many parallel holds race for one balance: exactly the affordable number succeed', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
    const outcomes = await Promise.all(
      Array.from({ length: 60 }, () =>
        ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: inFlight, amount: 30, currency: 'EUR' }),
      ),
    );
    expect(countResults(outcomes)).toEqual({ ok: 33, insufficient_funds: 27 });
    expect(await ledger.getBalance(player)).toEqual({ account_id: player, currency: 'EUR', available: 10, held: 990, posted: 1_000 });
  });

  it('parallel holds and immediate transfers from one balance never overdraw it', async () => {
    const { player } = await fundedPlayer(ledger, 'JPY', 10_000);
    const fees = await newAccount(ledger, 'fees', 'JPY');
    const amounts = Array.from({ length: 50 }, (_, i) => 100 + ((i * 37) % 400));
    const outcomes = await Promise.all(
      amounts.map((amount, i) =>
        (i % 2 ? ledger.hold : ledger.transfer)({ idempotencyKey: uniqueId('m'), debitAccountId: player, creditAccountId: fees, amount, currency: 'JPY' }),
      ),
    );
    const moved = outcomes.reduce((sum, o, i) => sum + (o.result === 'ok' ? amounts[i]! : 0), 0);
    const balance = await ledger.getBalance(player);
    expect(balance!.available).toBe(10_000 - moved);
    expect(balance!.available).toBeGreaterThanOrEqual(0);
    for (const o of outcomes) expect(['ok', 'insufficient_funds']).toContain(o.result);
    // Refusals happen only once the balance is nearly spent: less is left than the largest amount.
    if (outcomes.some((o) => o.result !== 'ok')) expect(balance!.available).toBeLessThan(Math.max(...amounts));
  });

  it('N concurrent identical commands move money once and all answer with the same transfer', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');

    const holdInput = { idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: inFlight, amount: 700, currency: 'EUR' };
    const holds = await Promise.all(Array.from({ length: 25 }, () => ledger.hold(holdInput)));
    expect(countResults(holds)).toEqual({ ok: 1, exists: 24 });
    const held = transferOf(holds[0]!);
    expect(new Set(holds.map((o) => transferOf(o).id))).toEqual(new Set([held.id]));
    expect(await ledger.getBalance(player)).toMatchObject({ available: 300, held: 700 });

    const postInput = { idempotencyKey: uniqueId('post'), pendingId: held.id };
    const posts = await Promise.all(Array.from({ length: 25 }, () => ledger.post(postInput)));
    expect(countResults(posts)).toEqual({ ok: 1, exists: 24 });
    expect(new Set(posts.map((o) => transferOf(o).id)).size).toBe(1);

    const settled = transferOf(posts[0]!);
    const refundInput = { idempotencyKey: uniqueId('refund'), transferId: settled.id, amount: 500 };
    const refunds = await Promise.all(Array.from({ length: 25 }, () => ledger.refund(refundInput)));
    expect(countResults(refunds)).toEqual({ ok: 1, exists: 24 });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 800, held: 0, posted: 800 });
  });

  it('concurrent duplicates with different parameters: one wins, the rest are refused as mismatches', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 100_000);
    const fees = await newAccount(ledger, 'fees', 'EUR');
    const key = uniqueId('k');
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ledger.transfer({ idempotencyKey: key, debitAccountId: player, creditAccountId: fees, amount: 100 + i, currency: 'EUR' })),
    );
    expect(countResults(outcomes)).toEqual({ ok: 1, exists_with_different_amount: 19 });
    const winner = outcomes.findIndex((o) => o.result === 'ok');
    expect(await ledger.getBalance(fees)).toMatchObject({ posted: 100 + winner });
  });

  it('racing posts and voids of one hold: exactly one resolves it, the rest get the precise reason', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
    const held = transferOf(await ledger.hold({ idempotencyKey: uniqueId('h'), debitAccountId: player, creditAccountId: inFlight, amount: 400, currency: 'EUR' }));
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 ? ledger.post({ idempotencyKey: uniqueId('p'), pendingId: held.id }) : ledger.void({ idempotencyKey: uniqueId('v'), pendingId: held.id }),
      ),
    );
    const winners = outcomes.filter((o) => o.result === 'ok');
    expect(winners).toHaveLength(1);
    const won = transferOf(winners[0]!).kind;
    const expectedLoss = won === 'post' ? 'pending_transfer_already_posted' : 'pending_transfer_already_voided';
    expect(countResults(outcomes)).toEqual({ ok: 1, [expectedLoss]: 19 });
    expect(await ledger.getBalance(player)).toMatchObject({ held: 0, posted: won === 'post' ? 600 : 1_000 });
  });

  it('parallel partial refunds never exceed the original', async () => {
    const { player, funding } = await fundedPlayer(ledger, 'EUR', 1_000);
    const payout = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: player, creditAccountId: funding, amount: 1_000, currency: 'EUR' }));
    const outcomes = await Promise.all(Array.from({ length: 15 }, () => ledger.refund({ idempotencyKey: uniqueId('r'), transferId: payout.id, amount: 100 })));
    expect(countResults(outcomes)).toEqual({ ok: 10, refund_exceeds_original: 5 });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 1_000 });
  });

  it('transfers in opposite directions between the same accounts do not deadlock', async () => {
    const { player: a } = await fundedPlayer(ledger, 'EUR', 10_000);
    const { player: b } = await fundedPlayer(ledger, 'EUR', 10_000);
    const outcomes = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        ledger.transfer({ idempotencyKey: uniqueId('x'), debitAccountId: i % 2 ? a : b, creditAccountId: i % 2 ? b : a, amount: 10, currency: 'EUR' }),
      ),
    );
    expect(countResults(outcomes)).toEqual({ ok: 60 });
    expect(await ledger.getBalance(a)).toMatchObject({ available: 10_000 });
    expect(await ledger.getBalance(b)).toMatchObject({ available: 10_000 });
  });

  it('between system accounts (no overdraft check, balances spread over slots): resolutions and refunds still happen once', async () => {
    const clearing = await newAccount(ledger, 'provider_clearing', 'EUR');
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
    const held = transferOf(await ledger.hold({ idempotencyKey: uniqueId('h'), debitAccountId: inFlight, creditAccountId: clearing, amount: 500, currency: 'EUR' }));
    const resolutions = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 ? ledger.post({ idempotencyKey: uniqueId('p'), pendingId: held.id, amount: 400 }) : ledger.void({ idempotencyKey: uniqueId('v'), pendingId: held.id }),
      ),
    );
    expect(resolutions.filter((o) => o.result === 'ok')).toHaveLength(1);

    const moved = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: clearing, creditAccountId: inFlight, amount: 1_000, currency: 'EUR' }));
    const refunds = await Promise.all(Array.from({ length: 15 }, () => ledger.refund({ idempotencyKey: uniqueId('r'), transferId: moved.id, amount: 100 })));
    expect(countResults(refunds)).toEqual({ ok: 10, refund_exceeds_original: 5 });

    const swaps = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        ledger.transfer({ idempotencyKey: uniqueId('x'), debitAccountId: i % 2 ? clearing : inFlight, creditAccountId: i % 2 ? inFlight : clearing, amount: 7, currency: 'EUR' }),
      ),
    );
    expect(countResults(swaps)).toEqual({ ok: 60 });
    const posted = resolutions.some((o) => o.result === 'ok' && o.transfer.kind === 'post') ? 400 : 0;
    expect(await ledger.getBalance(clearing)).toEqual({ account_id: clearing, currency: 'EUR', available: posted, held: 0, posted });
    expect(await ledger.getBalance(inFlight)).toEqual({ account_id: inFlight, currency: 'EUR', available: 0 - posted || 0, held: 0, posted: 0 - posted || 0 });
  });

  it('a post or void waiting for the player\'s balance row takes its transfer id only once it holds the lock: a player\'s ids are in the order they apply', async () => {
    for (const resolve of ['post', 'void'] as const) {
      const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
      const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
      const held = transferOf(await ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: inFlight, amount: 300, currency: 'EUR' }));
      // Another command on the player's account holds its balance row (as a hold does between its lock and its insert).
      const blocker = await pool.connect();
      try {
        await blocker.query('BEGIN');
        await blocker.query('SELECT 1 FROM ledger_balances WHERE account_id = $1 AND slot = 0 FOR UPDATE', [player]);
        const blockerPid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const resolution = resolve === 'post' ? ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id }) : ledger.void({ idempotencyKey: uniqueId('void'), pendingId: held.id });
        for (let waited = 0; ; waited += 20) {
          const { rowCount } = await pool.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [blockerPid]);
          if (rowCount) break;
          if (waited > 10_000) throw new Error(`the ${resolve} never waited for the balance row`);
          await new Promise((r) => setTimeout(r, 20));
        }
        // Meanwhile a transfer elsewhere commits and takes an id.
        const { player: other } = await fundedPlayer(ledger, 'EUR', 0);
        const { funding } = await fundedPlayer(ledger, 'EUR', 0);
        const elsewhere = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: funding, creditAccountId: other, amount: 1, currency: 'EUR' }));
        await blocker.query('COMMIT');
        const resolved = transferOf(await resolution);
        expect(resolved.id, `${resolve} id ${resolved.id} taken before it could apply (a transfer committed meanwhile took ${elsewhere.id})`).toBeGreaterThan(elsewhere.id);
      } finally {
        await blocker.query('ROLLBACK').catch(() => undefined);
        blocker.release();
      }
    }
  });
});
