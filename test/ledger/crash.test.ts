import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { Ledger, MovementInput } from '../../ledger';
import type { Pool } from '../../lib/db';
import { waitUntil } from '../../lib/wait';
import { testPool, uniqueId } from '../support';
import { expectInvariantsHold, fundedPlayer, ledgerFixture, newAccount, transferOf } from '../support/ledger';

/**
 * A command's transaction is killed mid-flight (pg_terminate_backend from another connection while it
 * is blocked inside its transaction), as a crash of the worker or the database connection would. The
 * caller sees an error and retries with the same idempotency key: money moves exactly once.
 */
let pool: Pool;
let ledger: Ledger;
let blocker: pg.Client;
let admin: pg.Client;

beforeAll(async () => {
  ({ pool, ledger } = ledgerFixture(testPool()));
  blocker = new pg.Client({ connectionString: inject('databaseUrl') });
  admin = new pg.Client({ connectionString: inject('databaseUrl') });
  await Promise.all([blocker.connect(), admin.connect()]);
});
afterEach(async () => {
  await blocker.query('ROLLBACK');
  await expectInvariantsHold(pool);
});
afterAll(async () => {
  await blocker?.end();
  await admin?.end();
  await pool?.end();
});

async function blockerPid(): Promise<number> {
  const { rows } = await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

/** Waits until some backend is blocked by the blocker while running a statement matching `query`, and returns its pid. */
async function blockedBackend(query: string): Promise<number> {
  const holder = await blockerPid();
  let victim: number | undefined;
  await waitUntil(
    'a ledger command blocked by the test',
    async () => {
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE $2`,
        [holder, `%${query}%`],
      );
      victim = rows[0]?.pid;
      return victim !== undefined;
    },
    10_000,
    20,
  );
  return victim!;
}

/** Marks the promise as handled now, so a test failing before it awaits the rejection reports only its own error. */
function settle<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

async function kill(pid: number): Promise<void> {
  const { rows } = await admin.query<{ killed: boolean }>('SELECT pg_terminate_backend($1) AS killed', [pid]);
  expect(rows[0]!.killed).toBe(true);
}

async function setup() {
  const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
  const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
  const input: MovementInput = { idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: inFlight, amount: 600, currency: 'EUR' };
  return { player, inFlight, input };
}

describe('a command whose connection is killed mid-transaction', () => {
  it('killed while waiting for the balance lock: nothing was written, the retry moves the money once', async () => {
    const { player, input } = await setup();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM ledger_balances WHERE account_id = $1 FOR UPDATE', [player]);

    const attempt = settle(ledger.hold(input));
    await kill(await blockedBackend('FOR UPDATE'));
    await expect(attempt).rejects.toThrow();
    await blocker.query('ROLLBACK');

    expect(await ledger.getTransfer(input.idempotencyKey)).toBeUndefined();
    expect(await ledger.getBalance(player)).toMatchObject({ available: 1_000, held: 0 });
    expect((await ledger.hold(input)).result).toBe('ok');
    expect((await ledger.hold(input)).result).toBe('exists');
    expect(await ledger.getBalance(player)).toMatchObject({ available: 400, held: 600 });
  });

  it('killed inside its INSERT (transfer row written, not committed): rolled back whole, the retry moves the money once', async () => {
    const { player, inFlight, input } = await setup();
    // The insert's foreign-key check needs a KEY SHARE lock on the credit account, which this holds.
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM ledger_accounts WHERE id = $1 FOR UPDATE', [inFlight]);

    const attempt = settle(ledger.hold(input));
    await kill(await blockedBackend('INSERT INTO ledger_transfers'));
    await expect(attempt).rejects.toThrow();
    await blocker.query('ROLLBACK');

    expect(await ledger.getTransfer(input.idempotencyKey)).toBeUndefined();
    expect(await ledger.getBalance(player)).toMatchObject({ available: 1_000, held: 0 });
    expect((await ledger.hold(input)).result).toBe('ok');
    expect(await ledger.getBalance(player)).toMatchObject({ available: 400, held: 600 });
  });

  it('a retry sent while the original still hangs waits for it; the original is killed and the retry moves the money once', async () => {
    const { player, inFlight, input } = await setup();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM ledger_accounts WHERE id = $1 FOR UPDATE', [inFlight]);

    const original = settle(ledger.hold(input));
    const stuck = await blockedBackend('INSERT INTO ledger_transfers');
    const retry = ledger.hold(input); // queues on the idempotency-key lock the original holds
    await waitUntil(
      'the retry waiting on the idempotency key',
      async () => (await admin.query(`SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%pg_advisory_xact_lock%'`, [stuck])).rowCount === 1,
      10_000,
      20,
    );
    await kill(stuck);
    await expect(original).rejects.toThrow();
    await blocker.query('ROLLBACK');

    const retried = transferOf(await retry);
    expect(retried).toMatchObject({ kind: 'hold', amount: 600, idempotencyKey: input.idempotencyKey });
    expect(await ledger.hold(input)).toEqual({ result: 'exists', transfer: retried });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 400, held: 600 });
  });

  it('a post killed mid-transaction and retried settles the hold once', async () => {
    const { player, inFlight, input } = await setup();
    const held = transferOf(await ledger.hold(input));
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM ledger_balances WHERE account_id = $1 FOR UPDATE', [player]);

    const postInput = { idempotencyKey: uniqueId('post'), pendingId: held.id };
    const attempt = settle(ledger.post(postInput));
    // Blocked locking the player's balance row, with the hold's row already locked (before its transfer takes an id).
    await kill(await blockedBackend('WITH locked AS MATERIALIZED'));
    await expect(attempt).rejects.toThrow();
    await blocker.query('ROLLBACK');

    expect(await ledger.getTransfer(held.id)).toMatchObject({ state: 'pending' });
    expect((await ledger.post(postInput)).result).toBe('ok');
    expect((await ledger.post(postInput)).result).toBe('exists');
    expect(await ledger.post({ ...postInput, idempotencyKey: uniqueId('post') })).toMatchObject({ result: 'pending_transfer_already_posted' });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 400, held: 0, posted: 400 });
    expect(await ledger.getBalance(inFlight)).toMatchObject({ posted: 600 });
  });
});
