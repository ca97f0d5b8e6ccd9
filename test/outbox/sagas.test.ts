import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../lib/wait';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { firstArrivalOrder, orderByAccount, outboxEventsOf, retireTestEndpoints, startReceiver, testPublisher, type Receiver } from './helpers';

/** The outbox fed by real sagas (deposits and payouts through the API, worker and sandbox), delivered once each. */
describe('ledger events of a run of sagas', () => {
  let stack: SagaStack;
  let receiver: Receiver;
  beforeAll(async () => {
    stack = await startSagaStack();
    receiver = await startReceiver();
  });
  afterAll(async () => {
    if (stack) await retireTestEndpoints(stack.pool);
    await receiver?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('arrive once per event id, in each account\'s order, with the saga meaning of each movement', async () => {
    const accounts = await Promise.all(Array.from({ length: 4 }, () => stack.fundedAccount(0)));
    // Per account, one after another: deposit credited, a payout settled, a payout failed, a payout returned.
    await Promise.all(
      accounts.map(async (accountId) => {
        const deposit = await stack.postDeposit(depositRequest(accountId, 10_000), uniqueId('dep'));
        await stack.waitForDepositStatus(deposit.json.deposit_id, ['CREDITED']);
        for (const [wallet, final] of [['wallet-0001', 'SETTLED'], ['sandbox:fail', 'FAILED'], ['sandbox:return_after_settlement', 'RETURNED']] as const) {
          const payout = await stack.postPayout(payoutRequest(accountId, 1_000, wallet), uniqueId('po'));
          await stack.waitForStatus(payout.json.payout_id, [final]);
        }
      }),
    );

    const outbox = await outboxEventsOf(stack.pool, accounts);
    const publisher = testPublisher(stack.pool, [receiver.url], accounts);
    publisher.start();
    try {
      await waitUntil('every event delivered', async () => receiver.distinctIds().size === outbox.length, 30_000, 50);
    } finally {
      await publisher.stop();
    }

    expect(receiver.received).toHaveLength(outbox.length); // no crash here: no redelivery either
    expect(receiver.received.every((r) => r.signatureOk)).toBe(true);
    expect(firstArrivalOrder(receiver.received)).toEqual(orderByAccount(outbox));
    const expected = ['deposit.credited', 'payout.held', 'payout.settled', 'payout.held', 'payout.released', 'payout.held', 'payout.settled', 'payout.refunded'];
    for (const accountId of accounts) {
      const types = receiver.received.filter((r) => r.accountId === accountId).map((r) => r.eventType);
      expect(types, accountId).toEqual(expected);
    }
    const settled = receiver.received.find((r) => r.eventType === 'payout.settled')!;
    expect(JSON.parse(settled.body)).toMatchObject({ schema_version: 1, idempotency_key: expect.stringMatching(/^po_[0-9a-f]{32}:post$/), payout_id: expect.stringMatching(/^po_/) });
  });
});
