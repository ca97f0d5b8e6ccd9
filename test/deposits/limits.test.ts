import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { depositRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('deposit limits: per deposit, per day, balance ceiling (EUR-equivalent, per currency)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    // EUR-equivalent: 1,000 a deposit (160,000 JPY, 410.000 BHD, 150,000 ISK), 1,500 a day, balance at most 2,000.
    stack = await startSagaStack({ DEPOSIT_MAX_AMOUNT: '1000', DEPOSIT_DAILY_MAX_AMOUNT: '1500', ACCOUNT_MAX_BALANCE: '2000' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  async function expectNothingWritten(accountId: string, key: string) {
    const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = $1', [accountId]);
    expect(records.rows[0].n).toBe(0);
    const rows = await stack.pool.query('SELECT count(*)::int AS n FROM deposits WHERE account_id = $1', [accountId]);
    expect(rows.rows[0].n).toBe(0);
    await expect(stack.temporal.workflow.getHandle(resourceIdFor('dp', accountId, key)).describe()).rejects.toThrow(WorkflowNotFoundError);
  }

  async function expectRefusedBySaga(res: Awaited<ReturnType<SagaStack['postDeposit']>>, detail: RegExp) {
    expect(res.status).toBe(422);
    expect(res.json).toMatchObject({ code: 'LIMIT_EXCEEDED', deposit_status: 'FAILED', failure_code: 'LIMIT_EXCEEDED' });
    expect(res.json.detail).toMatch(detail);
    const depositId = res.json.deposit_id as string;
    expect(await stack.waitForDepositStatus(depositId, ['FAILED'])).toMatchObject({ failure_code: 'LIMIT_EXCEEDED' });
    // Nothing reached the provider, nothing moved.
    expect((await fetch(`${stack.sandboxUrl}/v1/deposits?reference=${depositId}`)).status).toBe(404);
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
  }

  it.each([
    ['EUR', 100_001, 'A deposit may be at most 1000.00 EUR'],
    ['BHD', 410_001, 'A deposit may be at most 410.000 BHD'],
    ['ISK', Number.MAX_SAFE_INTEGER, 'A deposit may be at most 150000 ISK'],
  ])('over the per-deposit cap (%s %d): 422 LIMIT_EXCEEDED from the API, nothing written', async (currency, minor, detail) => {
    const accountId = await stack.fundedAccount(0, currency);
    const key = uniqueId('too-big');
    const res = await stack.postDeposit(depositRequest(accountId, minor, currency), key);
    expect(res.status).toBe(422);
    expect(res.json).toMatchObject({ code: 'LIMIT_EXCEEDED', detail });
    await expectNothingWritten(accountId, key);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 0 });
  });

  it('a JPY deposit within the JPY cap but above the EUR number (150,000 JPY) is credited', async () => {
    const accountId = await stack.fundedAccount(0, 'JPY');
    const res = await stack.postDeposit(depositRequest(accountId, 150_000, 'JPY'), uniqueId('jpy'));
    expect(res.status).toBe(201);
    await stack.waitForDepositStatus(res.json.deposit_id, ['CREDITED']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 150_000 });
  });

  it('past the daily total the saga refuses (LIMIT_EXCEEDED, FAILED) before asking the provider', async () => {
    const accountId = await stack.fundedAccount(0);
    for (const minor of [100_000, 40_000]) {
      const res = await stack.postDeposit(depositRequest(accountId, minor), uniqueId('daily'));
      expect(res.status).toBe(201);
      await stack.waitForDepositStatus(res.json.deposit_id, ['CREDITED']);
    }
    const refused = await stack.postDeposit(depositRequest(accountId, 10_001), uniqueId('daily'));
    await expectRefusedBySaga(refused, /at most 1500\.00 EUR a day/);
    await recordHistory(stack.temporal, 'deposit-refused-over-limit', refused.json.deposit_id);
    // Exactly up to the limit still passes; the refused deposit did not count.
    const last = await stack.postDeposit(depositRequest(accountId, 10_000), uniqueId('daily'));
    expect(last.status).toBe(201);
    await stack.waitForDepositStatus(last.json.deposit_id, ['CREDITED']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 150_000 });
  });

  it('over the balance ceiling the saga refuses; concurrent deposits cannot pass it together', async () => {
    const accountId = await stack.fundedAccount(190_000);
    await expectRefusedBySaga(await stack.postDeposit(depositRequest(accountId, 10_001), uniqueId('ceiling')), /A balance may be at most 2000\.00 EUR/);

    // 1,900 + 6 × 40 at once: exactly two fit under 2,000 (deposits approved but not yet credited count).
    const answers = await Promise.all(Array.from({ length: 6 }, () => stack.postDeposit(depositRequest(accountId, 4_000), uniqueId('ceiling'))));
    const accepted = answers.filter((a) => a.status === 201);
    expect(accepted).toHaveLength(2);
    for (const refused of answers.filter((a) => a.status !== 201)) expect(refused.json).toMatchObject({ code: 'LIMIT_EXCEEDED', failure_code: 'LIMIT_EXCEEDED' });
    await Promise.all(accepted.map((a) => stack.waitForDepositStatus(a.json.deposit_id, ['CREDITED'])));
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 198_000 });
  });

  it('after deposits that take the ISK clearing account past 2^53, ISK deposits are still credited', async () => {
    // What the API limits now stop, done with ledger commands: the reported 9,007,199,254,740,991 ISK, twice.
    const clearing = await stack.ledger.ensureSystemAccount('provider_clearing', 'ISK');
    for (let i = 0; i < 2; i++) {
      const whale = await stack.fundedAccount(0, 'ISK');
      const credited = await stack.ledger.transfer({ idempotencyKey: uniqueId('whale'), debitAccountId: clearing.id, creditAccountId: whale, amount: Number.MAX_SAFE_INTEGER, currency: 'ISK' });
      expect(credited.result).toBe('ok');
    }
    expect((await stack.ledger.getTotals(clearing.id))!.debitsPosted > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);

    const accountId = await stack.fundedAccount(0, 'ISK');
    const res = await stack.postDeposit(depositRequest(accountId, 5_000, 'ISK'), uniqueId('isk'));
    expect(res.status).toBe(201);
    await stack.waitForDepositStatus(res.json.deposit_id, ['CREDITED']);
    expect(await stack.ledger.getBalance(accountId)).toEqual({ account_id: accountId, currency: 'ISK', available: 5_000, held: 0, posted: 5_000 });
  });
});
