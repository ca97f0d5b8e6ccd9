import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('a decision not known within the sync deadline', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ SAGA_SYNC_DEADLINE_MS: '1' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('answers 202 with the stable payout id, replays that 202, and the saga still completes', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const key = uniqueId('key');
    const first = await stack.postPayout(payoutRequest(accountId, 600), key);
    expect(first.status).toBe(202);
    expect(first.json).toMatchObject({ status: 'REQUESTED', account_id: accountId });
    expect(first.headers.get('location')).toBe(`/v1/payouts/${first.json.payout_id}`);

    const repeat = await stack.postPayout(payoutRequest(accountId, 600), key);
    expect(repeat.status).toBe(202);
    expect(repeat.text).toBe(first.text);
    expect(repeat.headers.get('idempotent-replayed')).toBe('true');

    await stack.waitForStatus(first.json.payout_id, ['SETTLED']);
    expect((await stack.transfersOf(first.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 400, held: 0 });
  });
});
