import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('cancelling a payout (reversal window before submission)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_SUBMIT_DELAY_MS: '3000' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const cancel = async (payoutId: string, authorization = stack.service, body: unknown = { reason: 'changed my mind' }) => {
    const res = await fetch(`${stack.apiUrl}/v1/payouts/${payoutId}/cancel`, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as any };
  };

  it('cancel before submission voids the hold; a repeated cancel answers the same state', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 1_500), uniqueId('key'), player);
    expect(res.status).toBe(201);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 500, held: 1_500 });

    const cancelled = await cancel(res.json.payout_id, player);
    expect(cancelled.status).toBe(200);
    expect(cancelled.json).toMatchObject({ status: 'CANCELLED', cancellable: false });
    // The requester's words are staff text: the player's view carries the code.
    expect(cancelled.json.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'CANCELLED', note: 'cancelled' });
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 2_000, held: 0, posted: 2_000 });

    const again = await cancel(res.json.payout_id, player);
    expect(again.json).toMatchObject({ status: 'CANCELLED' });
    // Nothing reaches the provider after a cancel.
    const seen = await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${res.json.payout_id}`);
    expect(seen.status).toBe(404);
    await recordHistory(stack.temporal, 'payout-cancelled', res.json.payout_id);
  });

  it('cancel after submission is refused with 409 PAYOUT_NOT_CANCELLABLE and changes nothing', async () => {
    const accountId = await stack.fundedAccount(2_000);
    const res = await stack.postPayout(payoutRequest(accountId, 800, 'sandbox:stay_pending'), uniqueId('key'));
    await stack.waitForStatus(res.json.payout_id, ['SUBMITTED'], 15_000);
    const refused = await cancel(res.json.payout_id);
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({ code: 'PAYOUT_NOT_CANCELLABLE' });
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_200, held: 800 });

    // Let the provider settle it, so the suite leaves no saga waiting.
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${res.json.payout_id}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle' }) });
    await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'post']);
  });

  it('another player cannot cancel (404), a malformed id is 400', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    const stranger = await stack.playerAuth(uniqueId('stranger'));
    expect((await cancel(res.json.payout_id, stranger)).status).toBe(404);
    expect((await cancel('po_nope')).status).toBe(400);
    await cancel(res.json.payout_id);
    await stack.waitForStatus(res.json.payout_id, ['CANCELLED']);
  });
});
