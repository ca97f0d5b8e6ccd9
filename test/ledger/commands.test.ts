import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkInvariants, TRANSFER_ERROR_CODES, type Ledger, type MovementInput, type TransferErrorCode, type TransferResult } from '../../ledger';
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
  expect(retries).toEqual([]);
});
afterAll(async () => {
  await pool?.end();
});

describe('accounts', () => {
  it('creates once; a repeat says exists, a conflicting repeat says how it differs', async () => {
    const id = uniqueId('player');
    const created = await ledger.createAccount({ accountId: id, currency: 'EUR', kind: 'player' });
    expect(created).toMatchObject({ result: 'ok', account: { id, currency: 'EUR', kind: 'player', debitsMustNotExceedCredits: true } });
    expect(await ledger.createAccount({ accountId: id, currency: 'EUR', kind: 'player' })).toMatchObject({ result: 'exists', account: { id } });
    expect(await ledger.createAccount({ accountId: id, currency: 'USD', kind: 'player' })).toMatchObject({ result: 'exists_with_different_currency', account: { currency: 'EUR' } });
    expect(await ledger.createAccount({ accountId: id, currency: 'EUR', kind: 'fees' })).toMatchObject({ result: 'exists_with_different_kind', account: { kind: 'player' } });
    expect(await ledger.getAccount(id)).toEqual(created.result === 'ok' ? created.account : undefined);
    expect(await ledger.getBalance(id)).toEqual({ account_id: id, currency: 'EUR', available: 0, held: 0, posted: 0 });
  });

  it('refuses bad ids, kinds, currencies and flags, writing nothing', async () => {
    const id = uniqueId('player');
    const cases: [Parameters<Ledger['createAccount']>[0], string][] = [
      [{ accountId: '', currency: 'EUR', kind: 'player' }, 'invalid_account_id'],
      [{ accountId: 'x'.repeat(129), currency: 'EUR', kind: 'player' }, 'invalid_account_id'],
      [{ accountId: 'has space', currency: 'EUR', kind: 'player' }, 'invalid_account_id'],
      [{ accountId: 'system:fees:EUR', currency: 'EUR', kind: 'player' }, 'invalid_account_id'],
      [{ accountId: id, currency: 'EUR', kind: 'bank' as never }, 'invalid_account_kind'],
      [{ accountId: id, currency: 'XXX', kind: 'player' }, 'unknown_currency'],
      [{ accountId: id, currency: 'eur', kind: 'player' }, 'unknown_currency'],
      [{ accountId: id, currency: 'EUR', kind: 'player', debitsMustNotExceedCredits: false }, 'invalid_flags'],
    ];
    for (const [input, code] of cases) {
      expect(await ledger.createAccount(input)).toMatchObject({ result: code, code: code.toUpperCase() });
    }
    expect(await ledger.getAccount(id)).toBeUndefined();
    expect(await ledger.getBalance(id)).toBeUndefined();
  });

  it('gets or creates per-currency system accounts', async () => {
    const a = await ledger.ensureSystemAccount('payouts_in_flight', 'JPY');
    expect(a).toMatchObject({ id: 'system:payouts_in_flight:JPY', currency: 'JPY', kind: 'payouts_in_flight', debitsMustNotExceedCredits: false });
    expect(await ledger.ensureSystemAccount('payouts_in_flight', 'JPY')).toEqual(a);
    await expect(ledger.ensureSystemAccount('fees', 'XXX')).rejects.toThrow(/unknown_currency/);
  });
});

describe('transfer', () => {
  it('moves posted money once per idempotency key', async () => {
    const { player, funding } = await fundedPlayer(ledger, 'EUR', 10_000);
    const fees = await newAccount(ledger, 'fees', 'EUR');
    const input: MovementInput = { idempotencyKey: uniqueId('fee'), debitAccountId: player, creditAccountId: fees, amount: 250, currency: 'EUR', metadata: { step: 'fee' } };

    const first = transferOf(await ledger.transfer(input));
    expect(first).toMatchObject({ kind: 'transfer', state: 'posted', amount: 250, debitAccountId: player, creditAccountId: fees, metadata: { step: 'fee' } });
    // Metadata is annotation, not a parameter: the repeat is the same command, and the first write wins.
    const again = await ledger.transfer({ ...input, metadata: { step: 'fee', attempt: 2 } });
    expect(again).toEqual({ result: 'exists', transfer: first });

    expect(await ledger.getBalance(player)).toEqual({ account_id: player, currency: 'EUR', available: 9_750, held: 0, posted: 9_750 });
    expect(await ledger.getBalance(fees)).toMatchObject({ posted: 250 });
    expect(await ledger.getBalance(funding)).toMatchObject({ posted: -10_000, available: -10_000 });
    expect(await ledger.getTransfer(first.id)).toEqual(first);
    expect(await ledger.getTransfer(input.idempotencyKey)).toEqual(first);
  });

  it('refuses a repeat with other parameters, naming the first field that differs (exists_with_different_*), and changes nothing', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
    const fees = await newAccount(ledger, 'fees', 'EUR');
    const other = await newAccount(ledger, 'fees', 'EUR');
    const input: MovementInput = { idempotencyKey: uniqueId('k'), debitAccountId: player, creditAccountId: fees, amount: 100, currency: 'EUR' };
    const original = transferOf(await ledger.transfer(input));

    const variants: [Promise<TransferResult>, string][] = [
      [ledger.transfer({ ...input, amount: 101 }), 'exists_with_different_amount'],
      [ledger.transfer({ ...input, creditAccountId: other }), 'exists_with_different_credit_account_id'],
      [ledger.transfer({ ...input, debitAccountId: other, creditAccountId: player }), 'exists_with_different_debit_account_id'],
      [ledger.transfer({ ...input, creditAccountId: other, amount: 1 }), 'exists_with_different_credit_account_id'],
      [ledger.hold(input), 'exists_with_different_kind'],
      [ledger.void({ idempotencyKey: input.idempotencyKey, pendingId: original.id }), 'exists_with_different_kind'],
      [ledger.refund({ idempotencyKey: input.idempotencyKey, transferId: original.id }), 'exists_with_different_kind'],
    ];
    for (const [outcome, result] of variants) {
      expect(await outcome).toMatchObject({ result, code: result.toUpperCase() });
    }
    expect(await ledger.getBalance(player)).toMatchObject({ available: 900, held: 0 });
    expect(await ledger.getBalance(other)).toMatchObject({ posted: 0 });
    expect(await ledger.getTransfer(input.idempotencyKey)).toEqual(original);
  });

  it('refuses bad input with a precise code and writes nothing', async () => {
    const { player, funding } = await fundedPlayer(ledger, 'EUR', 1_000);
    const usdPlayer = await newAccount(ledger, 'player', 'USD');
    const valid: MovementInput = { idempotencyKey: 'replaced', debitAccountId: player, creditAccountId: funding, amount: 10, currency: 'EUR' };
    const cases: [Partial<MovementInput> & Record<string, unknown>, string][] = [
      [{ amount: -1 }, 'invalid_amount'],
      [{ amount: 0 }, 'invalid_amount'],
      [{ amount: 1.5 }, 'invalid_amount'],
      [{ amount: Number.MAX_SAFE_INTEGER + 1 }, 'invalid_amount'],
      [{ amount: Number.NaN }, 'invalid_amount'],
      [{ amount: Number.POSITIVE_INFINITY }, 'invalid_amount'],
      [{ amount: '10' as unknown as number }, 'invalid_amount'],
      [{ currency: 'XXX' }, 'unknown_currency'],
      [{ currency: 'eur' }, 'unknown_currency'],
      [{ currency: 'USD' }, 'currency_mismatch'],
      [{ creditAccountId: usdPlayer }, 'currency_mismatch'],
      [{ debitAccountId: uniqueId('nobody') }, 'debit_account_not_found'],
      [{ creditAccountId: uniqueId('nobody') }, 'credit_account_not_found'],
      [{ creditAccountId: player }, 'same_account'],
      [{ amount: 1_001 }, 'insufficient_funds'],
      [{ metadata: [] as unknown as Record<string, unknown> }, 'invalid_metadata'],
      [{ metadata: { big: 'x'.repeat(20_000) } }, 'invalid_metadata'],
    ];
    for (const command of ['transfer', 'hold'] as const) {
      for (const [change, code] of cases) {
        const key = uniqueId('bad');
        const outcome = await ledger[command]({ ...valid, ...change, idempotencyKey: key });
        expect([command, change, outcome]).toMatchObject([command, change, { result: code, code: code.toUpperCase() }]);
        expect(await ledger.getTransfer(key)).toBeUndefined();
      }
    }
    for (const key of ['', 'k'.repeat(513), 'line\nbreak']) {
      expect(await ledger.transfer({ ...valid, idempotencyKey: key })).toMatchObject({ result: 'invalid_idempotency_key' });
    }
    expect(await ledger.getBalance(player)).toMatchObject({ available: 1_000, held: 0, posted: 1_000 });
    expect(await ledger.getBalance(usdPlayer)).toMatchObject({ posted: 0 });
    // A refused command leaves its key free: the same key then succeeds once funds suffice.
    const key = uniqueId('later');
    expect(await ledger.transfer({ ...valid, idempotencyKey: key, amount: 1_001 })).toMatchObject({ result: 'insufficient_funds' });
    expect(await ledger.transfer({ ...valid, idempotencyKey: key, amount: 1_000 })).toMatchObject({ result: 'ok' });
  });

  it('refuses a movement that would take a player balance beyond Number.MAX_SAFE_INTEGER (its figures stay exact)', async () => {
    const max = Number.MAX_SAFE_INTEGER;
    const player = await newAccount(ledger, 'player', 'JPY');
    const funding = await newAccount(ledger, 'operator_funding', 'JPY');
    expect((await ledger.transfer({ idempotencyKey: uniqueId('k'), debitAccountId: funding, creditAccountId: player, amount: max, currency: 'JPY' })).result).toBe('ok');
    expect(await ledger.hold({ idempotencyKey: uniqueId('k'), debitAccountId: funding, creditAccountId: player, amount: 1, currency: 'JPY' })).toMatchObject({ result: 'overflows_credits' });
    expect(await ledger.transfer({ idempotencyKey: uniqueId('k'), debitAccountId: funding, creditAccountId: player, amount: 1, currency: 'JPY' })).toMatchObject({ result: 'overflows_credits' });
    expect(await ledger.getBalance(player)).toEqual({ account_id: player, currency: 'JPY', available: max, held: 0, posted: max });
    // Spending makes room again: the cap is on the balance, not on the player's lifetime totals.
    const sink = await newAccount(ledger, 'fees', 'JPY');
    expect((await ledger.transfer({ idempotencyKey: uniqueId('k'), debitAccountId: player, creditAccountId: sink, amount: 10, currency: 'JPY' })).result).toBe('ok');
    expect((await ledger.transfer({ idempotencyKey: uniqueId('k'), debitAccountId: funding, creditAccountId: player, amount: 10, currency: 'JPY' })).result).toBe('ok');
    expect(await ledger.getTotals(player)).toEqual({ debitsPending: 0n, debitsPosted: 10n, creditsPending: 0n, creditsPosted: BigInt(max) + 10n, posted: BigInt(max) });
  });

  it('a system account\'s totals pass 2^53 and every ledger command still works (wide totals)', async () => {
    // As after deposits of 9,007,199,254,740,991 ISK: the clearing account is debited for each, far past 2^53.
    const max = Number.MAX_SAFE_INTEGER;
    const clearing = await newAccount(ledger, 'provider_clearing', 'ISK');
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'ISK');
    const players = [await newAccount(ledger, 'player', 'ISK'), await newAccount(ledger, 'player', 'ISK'), await newAccount(ledger, 'player', 'ISK')];
    for (const player of players) {
      expect((await ledger.transfer({ idempotencyKey: uniqueId('deposit'), debitAccountId: clearing, creditAccountId: player, amount: max, currency: 'ISK' })).result).toBe('ok');
    }
    const small = await newAccount(ledger, 'player', 'ISK');
    expect((await ledger.transfer({ idempotencyKey: uniqueId('deposit'), debitAccountId: clearing, creditAccountId: small, amount: 1_000, currency: 'ISK' })).result).toBe('ok');
    expect(await ledger.getTotals(clearing)).toMatchObject({ debitsPosted: 3n * BigInt(max) + 1_000n, creditsPosted: 0n, posted: -(3n * BigInt(max) + 1_000n) });

    // Payout-shaped holds, posts, voids and refunds through the clearing account keep working.
    const hold = transferOf(await ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: players[0]!, creditAccountId: inFlight, amount: max, currency: 'ISK' }));
    transferOf(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: hold.id }));
    const settled = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('settle'), debitAccountId: inFlight, creditAccountId: clearing, amount: max, currency: 'ISK' }));
    transferOf(await ledger.refund({ idempotencyKey: uniqueId('return'), transferId: settled.id, amount: 5 }));
    const voided = transferOf(await ledger.hold({ idempotencyKey: uniqueId('hold'), debitAccountId: small, creditAccountId: inFlight, amount: 400, currency: 'ISK' }));
    transferOf(await ledger.void({ idempotencyKey: uniqueId('void'), pendingId: voided.id }));
    expect(await ledger.getTotals(clearing)).toMatchObject({ debitsPosted: 3n * BigInt(max) + 1_005n, creditsPosted: BigInt(max) });

    // Player balances stay exact numbers.
    expect(await ledger.getBalance(players[0]!)).toEqual({ account_id: players[0], currency: 'ISK', available: 0, held: 0, posted: 0 });
    expect(await ledger.getBalance(players[1]!)).toEqual({ account_id: players[1], currency: 'ISK', available: max, held: 0, posted: max });
    expect(await ledger.getBalance(small)).toEqual({ account_id: small, currency: 'ISK', available: 1_000, held: 0, posted: 1_000 });
    await expectInvariantsHold(pool);
  });
});

describe('result codes', () => {
  it('when several refusals apply, the one first in TRANSFER_ERROR_CODES is returned (precedence order), and nothing is written', async () => {
    const { player, funding } = await fundedPlayer(ledger, 'EUR', 1_000);
    const usdPlayer = await newAccount(ledger, 'player', 'USD');
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
    const valid: MovementInput = { idempotencyKey: 'replaced', debitAccountId: player, creditAccountId: inFlight, amount: 10, currency: 'EUR' };
    const usedKey = uniqueId('used');
    transferOf(await ledger.transfer({ ...valid, idempotencyKey: usedKey }));
    const held = transferOf(await ledger.hold({ ...valid, idempotencyKey: uniqueId('h'), amount: 100 }));
    const posted = transferOf(await ledger.post({ idempotencyKey: uniqueId('p'), pendingId: held.id }));
    // The player spends all but 5: a refund of the payout could not be taken back from it.
    transferOf(await ledger.transfer({ ...valid, idempotencyKey: uniqueId('spend'), amount: 885 }));

    const cases: [string, () => Promise<TransferResult>, TransferErrorCode[]][] = [
      ['bad key and bad amount', () => ledger.transfer({ ...valid, idempotencyKey: '', amount: -1 }), ['invalid_amount', 'invalid_idempotency_key']],
      ['bad metadata on one account', () => ledger.transfer({ ...valid, idempotencyKey: uniqueId('k'), creditAccountId: player, metadata: [] as never }), ['same_account', 'invalid_metadata']],
      ['one account and a bad amount', () => ledger.hold({ ...valid, idempotencyKey: uniqueId('k'), creditAccountId: player, amount: 0 }), ['invalid_amount', 'same_account']],
      ['a bad amount in an unknown currency', () => ledger.transfer({ ...valid, idempotencyKey: uniqueId('k'), amount: 1.5, currency: 'XXX' }), ['unknown_currency', 'invalid_amount']],
      ['a used key, another amount the player cannot afford', () => ledger.transfer({ ...valid, idempotencyKey: usedKey, amount: 5_000 }), ['insufficient_funds', 'exists_with_different_amount']],
      ['a used key, another currency the accounts do not hold', () => ledger.transfer({ ...valid, idempotencyKey: usedKey, currency: 'USD' }), ['currency_mismatch', 'exists_with_different_currency']],
      ['a used key, another debit account and amount', () => ledger.transfer({ ...valid, idempotencyKey: usedKey, debitAccountId: funding, amount: 11 }), ['exists_with_different_amount', 'exists_with_different_debit_account_id']],
      ['a used key for a post of a hold that does not exist', () => ledger.post({ idempotencyKey: usedKey, pendingId: 2 ** 40 }), ['pending_transfer_not_found', 'exists_with_different_kind']],
      ['an unknown debit account in another currency', () => ledger.transfer({ ...valid, idempotencyKey: uniqueId('k'), debitAccountId: uniqueId('nobody'), creditAccountId: usdPlayer }), ['currency_mismatch', 'debit_account_not_found']],
      ['another currency, more than the player has', () => ledger.hold({ ...valid, idempotencyKey: uniqueId('k'), creditAccountId: usdPlayer, amount: 5_000 }), ['insufficient_funds', 'currency_mismatch']],
      ['a posted hold, posted again for more', () => ledger.post({ idempotencyKey: uniqueId('k'), pendingId: held.id, amount: 500 }), ['exceeds_pending_transfer_amount', 'pending_transfer_already_posted']],
      ['a refund beyond the original the player cannot cover', () => ledger.refund({ idempotencyKey: uniqueId('k'), transferId: posted.id, amount: 101 }), ['insufficient_funds', 'refund_exceeds_original']],
      ['a refund of a hold', () => ledger.refund({ idempotencyKey: uniqueId('k'), transferId: held.id, amount: 1 }), ['transfer_not_refundable']],
    ];
    const rank = (code: TransferErrorCode) => TRANSFER_ERROR_CODES.indexOf(code);
    for (const [name, command, applicable] of cases) {
      const first = [...applicable].sort((a, b) => rank(a) - rank(b))[0];
      expect([name, (await command()).result]).toEqual([name, first]);
    }
    expect(await ledger.getBalance(player)).toMatchObject({ available: 5, held: 0, posted: 5 });
    expect(await ledger.getBalance(usdPlayer)).toMatchObject({ posted: 0 });
  });
});

describe('hold, post and void', () => {
  async function holdFor(amount: number, funds = 1_000) {
    const { player } = await fundedPlayer(ledger, 'BHD', funds);
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'BHD');
    const input: MovementInput = { idempotencyKey: uniqueId('hold'), debitAccountId: player, creditAccountId: inFlight, amount, currency: 'BHD' };
    const held = transferOf(await ledger.hold(input));
    return { player, inFlight, input, held };
  }

  it('a hold reserves funds; posting settles it exactly once', async () => {
    const { player, inFlight, input, held } = await holdFor(700);
    expect(held).toMatchObject({ kind: 'hold', state: 'pending', resolvedById: null });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 300, held: 700, posted: 1_000 });
    expect(await ledger.hold({ ...input, idempotencyKey: uniqueId('second') })).toMatchObject({ result: 'insufficient_funds' });

    const postKey = uniqueId('post');
    const posted = transferOf(await ledger.post({ idempotencyKey: postKey, pendingId: held.id }));
    expect(posted).toMatchObject({ kind: 'post', state: 'posted', pendingId: held.id, amount: 700, debitAccountId: player, creditAccountId: inFlight });
    expect(await ledger.post({ idempotencyKey: postKey, pendingId: held.id })).toEqual({ result: 'exists', transfer: posted });
    expect(await ledger.post({ idempotencyKey: postKey, pendingId: held.id, amount: 700 })).toMatchObject({ result: 'exists_with_different_amount' });
    expect(await ledger.post({ idempotencyKey: postKey, pendingId: held.id + 1 })).toMatchObject({ result: 'exists_with_different_pending_id' });
    expect(await ledger.post({ idempotencyKey: postKey, pendingId: -1 })).toMatchObject({ result: 'exists_with_different_pending_id' });
    expect(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id })).toMatchObject({ result: 'pending_transfer_already_posted', code: 'PENDING_TRANSFER_ALREADY_POSTED' });
    expect(await ledger.void({ idempotencyKey: uniqueId('void'), pendingId: held.id })).toMatchObject({ result: 'pending_transfer_already_posted' });

    expect(await ledger.getTransfer(held.id)).toMatchObject({ state: 'posted', resolvedById: posted.id });
    // The hold's own repeat returns the same transfer, now showing its current state.
    expect(await ledger.hold(input)).toMatchObject({ result: 'exists', transfer: { id: held.id, state: 'posted' } });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 300, held: 0, posted: 300 });
    expect(await ledger.getBalance(inFlight)).toMatchObject({ available: 700, held: 0, posted: 700 });
  });

  it('voiding releases the hold exactly once', async () => {
    const { player, inFlight, held } = await holdFor(400);
    const voidKey = uniqueId('void');
    const voided = transferOf(await ledger.void({ idempotencyKey: voidKey, pendingId: held.id }));
    expect(voided).toMatchObject({ kind: 'void', state: 'voided', amount: 400, pendingId: held.id });
    expect(await ledger.void({ idempotencyKey: voidKey, pendingId: held.id })).toEqual({ result: 'exists', transfer: voided });
    expect(await ledger.void({ idempotencyKey: uniqueId('void'), pendingId: held.id })).toMatchObject({ result: 'pending_transfer_already_voided' });
    expect(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id })).toMatchObject({ result: 'pending_transfer_already_voided' });
    expect(await ledger.getTransfer(held.id)).toMatchObject({ state: 'voided', resolvedById: voided.id });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 1_000, held: 0, posted: 1_000 });
    expect(await ledger.getBalance(inFlight)).toMatchObject({ posted: 0, held: 0 });
  });

  it('posts part of a hold and releases the rest', async () => {
    const { player, inFlight, held } = await holdFor(1_000);
    expect(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id, amount: 1_001 })).toMatchObject({ result: 'exceeds_pending_transfer_amount' });
    expect(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id, amount: 0 })).toMatchObject({ result: 'invalid_amount' });
    expect(transferOf(await ledger.post({ idempotencyKey: uniqueId('post'), pendingId: held.id, amount: 600 }))).toMatchObject({ amount: 600 });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 400, held: 0, posted: 400 });
    expect(await ledger.getBalance(inFlight)).toMatchObject({ posted: 600 });
  });

  it('names what is wrong with the pending transfer', async () => {
    const { player, funding } = await fundedPlayer(ledger, 'EUR', 100);
    const notAHold = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('t'), debitAccountId: player, creditAccountId: funding, amount: 1, currency: 'EUR' }));
    expect(await ledger.post({ idempotencyKey: uniqueId('p'), pendingId: notAHold.id })).toMatchObject({ result: 'pending_transfer_not_pending' });
    expect(await ledger.void({ idempotencyKey: uniqueId('v'), pendingId: notAHold.id })).toMatchObject({ result: 'pending_transfer_not_pending' });
    for (const pendingId of [Number.MAX_SAFE_INTEGER, -1, 0, 1.5]) {
      expect(await ledger.post({ idempotencyKey: uniqueId('p'), pendingId })).toMatchObject({ result: 'pending_transfer_not_found' });
    }
  });
});

describe('refund', () => {
  it('reverses part of a settled payout, never more than the original in total', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 1_000);
    const inFlight = await newAccount(ledger, 'payouts_in_flight', 'EUR');
    const held = transferOf(await ledger.hold({ idempotencyKey: uniqueId('h'), debitAccountId: player, creditAccountId: inFlight, amount: 600, currency: 'EUR' }));
    const settled = transferOf(await ledger.post({ idempotencyKey: uniqueId('p'), pendingId: held.id }));

    const key = uniqueId('refund');
    const first = transferOf(await ledger.refund({ idempotencyKey: key, transferId: settled.id, amount: 200 }));
    expect(first).toMatchObject({ kind: 'refund', refundOfId: settled.id, debitAccountId: inFlight, creditAccountId: player, amount: 200, state: 'posted' });
    expect(await ledger.refund({ idempotencyKey: key, transferId: settled.id, amount: 200 })).toEqual({ result: 'exists', transfer: first });
    expect(await ledger.refund({ idempotencyKey: key, transferId: settled.id, amount: 300 })).toMatchObject({ result: 'exists_with_different_amount' });
    expect(await ledger.refund({ idempotencyKey: key, transferId: held.id, amount: 200 })).toMatchObject({ result: 'exists_with_different_refund_of_id' });
    expect((await ledger.refund({ idempotencyKey: uniqueId('refund'), transferId: settled.id, amount: 400 })).result).toBe('ok');
    expect(await ledger.refund({ idempotencyKey: uniqueId('refund'), transferId: settled.id, amount: 1 })).toMatchObject({ result: 'refund_exceeds_original', code: 'REFUND_EXCEEDS_ORIGINAL' });
    expect(await ledger.getBalance(player)).toMatchObject({ available: 1_000, posted: 1_000, held: 0 });

    expect(await ledger.refund({ idempotencyKey: uniqueId('r'), transferId: held.id })).toMatchObject({ result: 'transfer_not_refundable' });
    expect(await ledger.refund({ idempotencyKey: uniqueId('r'), transferId: first.id })).toMatchObject({ result: 'transfer_not_refundable' });
    expect(await ledger.refund({ idempotencyKey: uniqueId('r'), transferId: Number.MAX_SAFE_INTEGER })).toMatchObject({ result: 'transfer_not_found' });
    expect(await ledger.refund({ idempotencyKey: uniqueId('r'), transferId: settled.id, amount: -5 })).toMatchObject({ result: 'invalid_amount' });
  });

  it('cannot take back from a player more than is available', async () => {
    const player = await newAccount(ledger, 'player', 'EUR');
    const clearing = await newAccount(ledger, 'provider_clearing', 'EUR');
    const fees = await newAccount(ledger, 'fees', 'EUR');
    const deposit = transferOf(await ledger.transfer({ idempotencyKey: uniqueId('d'), debitAccountId: clearing, creditAccountId: player, amount: 500, currency: 'EUR' }));
    expect((await ledger.transfer({ idempotencyKey: uniqueId('f'), debitAccountId: player, creditAccountId: fees, amount: 400, currency: 'EUR' })).result).toBe('ok');
    expect(await ledger.refund({ idempotencyKey: uniqueId('r'), transferId: deposit.id })).toMatchObject({ result: 'insufficient_funds' });
    expect((await ledger.refund({ idempotencyKey: uniqueId('r'), transferId: deposit.id, amount: 100 })).result).toBe('ok');
    expect(await ledger.getBalance(player)).toMatchObject({ available: 0 });
  });
});

describe('what the database enforces by itself', () => {
  it('transfers and accounts are append-only; balances move only through transfers', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 100);
    const statements = [
      `UPDATE ledger_transfers SET amount = amount + 1 WHERE credit_account_id = '${player}'`,
      `DELETE FROM ledger_transfers WHERE credit_account_id = '${player}'`,
      `UPDATE ledger_balances SET credits_posted = credits_posted + 1 WHERE account_id = '${player}'`,
      `DELETE FROM ledger_balances WHERE account_id = '${player}'`,
      `UPDATE ledger_accounts SET currency = 'USD' WHERE id = '${player}'`,
      `DELETE FROM ledger_accounts WHERE id = '${player}'`,
      'TRUNCATE ledger_transfers',
    ];
    for (const sql of statements) {
      await expect(pool.query(sql), sql).rejects.toMatchObject({ code: '23001' });
    }
    expect(await ledger.getBalance(player)).toMatchObject({ posted: 100 });
  });

  it('refuses to commit an overdraft or a mismatched currency written around the ledger module', async () => {
    const { player, funding } = await fundedPlayer(ledger, 'EUR', 100);
    const usd = await newAccount(ledger, 'fees', 'USD');
    const insert = `INSERT INTO ledger_transfers (idempotency_key, request_fingerprint, kind, state, debit_account_id, credit_account_id, amount, currency)
                    VALUES ($1, repeat('0', 64), 'transfer', 'posted', $2, $3, $4, $5)`;
    await expect(pool.query(insert, [uniqueId('raw'), player, funding, 101, 'EUR'])).rejects.toMatchObject({ code: '23514', constraint: 'ledger_balances_no_overdraft' });
    await expect(pool.query(insert, [uniqueId('raw'), player, usd, 1, 'EUR'])).rejects.toMatchObject({ code: '23503' });
    expect(await ledger.getBalance(player)).toMatchObject({ posted: 100 });
  });

  it('the invariant checker sees corruption (made inside a transaction that is rolled back)', async () => {
    const { player } = await fundedPlayer(ledger, 'EUR', 100);
    const client = await pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      // Replica mode skips the guard triggers, as a careless manual fix would.
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query('UPDATE ledger_balances SET credits_posted = credits_posted + 5 WHERE account_id = $1', [player]);
      const report = await checkInvariants(client);
      expect(report.ok).toBe(false);
      expect(new Set(report.violations.map((v) => v.rule))).toEqual(new Set(['currency_sums_to_zero', 'balances_equal_transfers']));
      expect(report.violations.find((v) => v.rule === 'balances_equal_transfers')?.detail).toMatchObject({ account_id: player, stored_credits_posted: '105', transfers_credits_posted: '100' });
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
