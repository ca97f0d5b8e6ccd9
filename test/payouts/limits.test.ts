import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('payout limits per currency (EUR-equivalent, converted with LIMIT_CURRENCY_RATES)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    // 1,000 EUR-equivalent: 160,000 JPY and 410.000 BHD with the default rates.
    stack = await startSagaStack({ PAYOUT_MAX_AMOUNT: '1000' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  async function payout(currency: string, minor: number) {
    const accountId = await stack.fundedAccount(10 ** 9, currency);
    return stack.postPayout(payoutRequest(accountId, minor, 'wallet-0001', currency), uniqueId('limit'));
  }

  it('a JPY payout within the JPY limit but above the EUR number (150,000 JPY) is held', async () => {
    const res = await payout('JPY', 150_000);
    expect([res.status, res.json.status]).toEqual([201, 'HELD']);
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
  });

  it('a BHD payout above its limit (500.000 BHD > 410.000 BHD) is declined LIMIT_EXCEEDED; one within it is held', async () => {
    const refused = await payout('BHD', 500_000);
    expect(refused.status).toBe(422);
    expect(refused.json).toMatchObject({ code: 'LIMIT_EXCEEDED', payout_status: 'DECLINED' });
    expect(await stack.transfersOf(refused.json.payout_id)).toEqual([]);
    const held = await payout('BHD', 410_000);
    expect([held.status, held.json.status]).toEqual([201, 'HELD']);
    await stack.waitForStatus(held.json.payout_id, ['SETTLED']);
  });

  it('EUR keeps its number: 1,000.00 EUR is held, 1,000.01 EUR declined', async () => {
    expect((await payout('EUR', 100_000)).status).toBe(201);
    expect((await payout('EUR', 100_001)).json).toMatchObject({ code: 'LIMIT_EXCEEDED' });
  });
});
