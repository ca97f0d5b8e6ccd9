import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../lib/wait';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

describe('a provider silent for a long time', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    // Polls every 50 ms and a tiny history budget: the saga must continue as new runs while it waits.
    stack = await startSagaStack({ PROVIDER_POLL_INITIAL_MS: '50', PROVIDER_POLL_MAX_MS: '50', PROVIDER_STUCK_AFTER_MS: '300', SAGA_CONTINUE_AS_NEW_AFTER_EVENTS: '60' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const runsOf = async (payoutId: string) => {
    const runs: string[] = [];
    for await (const execution of stack.temporal.workflow.list({ query: `WorkflowId = '${payoutId}'` })) runs.push(execution.runId);
    return runs;
  };

  it('keeps each run\'s history short by continuing as new, and still settles exactly once with its whole timeline', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const key = uniqueId('key');
    const res = await stack.postPayout(payoutRequest(accountId, 400, 'sandbox:stay_pending'), key);
    expect(res.status).toBe(201);
    const payoutId: string = res.json.payout_id;

    for (let i = 0; (await runsOf(payoutId)).length < 3; i++) {
      if (i > 150) throw new Error('the saga never continued as new');
      await sleep(200);
    }
    const waiting = await stack.getPayout(payoutId);
    expect(waiting).toMatchObject({ status: 'SUBMITTED', stuck: true });
    expect(waiting.timeline.map((t: { status: string }) => t.status).slice(0, 4)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SUBMITTED']);
    // A retried request long after still gets the first answer.
    const again = await stack.postPayout(payoutRequest(accountId, 400, 'sandbox:stay_pending'), key);
    expect(again.text).toBe(res.text);

    // The provider settles without calling back; the current run's poll finds it.
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle', send_webhook: false }) });
    const settled = await stack.waitForStatus(payoutId, ['SETTLED']);
    expect(settled.stuck).toBe(false);
    expect(settled.timeline.filter((t: { status: string }) => t.status !== 'SUBMITTED').map((t: { status: string }) => t.status)).toEqual(['REQUESTED', 'AUTHORIZED', 'HELD', 'SETTLED']);
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 400 },
      { kind: 'post', amount: 400 },
    ]);
    await recordHistory(stack.temporal, 'payout-settled-after-continue-as-new', payoutId);
  });

  it('a deposit waiting on its provider continues as new too, and is credited once', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('dep');
    const depositId = resourceIdFor('dp', accountId, key);
    await stack.scriptSandbox(depositId, { scenario: 'stay_pending' });
    const res = await stack.postDeposit(depositRequest(accountId, 700), key);
    expect(res.status).toBe(201);
    for (let i = 0; (await runsOf(depositId)).length < 3; i++) {
      if (i > 150) throw new Error('the deposit saga never continued as new');
      await sleep(200);
    }
    expect(await stack.getDeposit(depositId)).toMatchObject({ status: 'PENDING', stuck: true, checkout_url: res.json.checkout_url });

    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/deposits?reference=${depositId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/deposits/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'succeed', send_webhook: false }) });
    const credited = await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(credited.timeline.filter((t: { status: string }) => t.status !== 'PENDING').map((t: { status: string }) => t.status)).toEqual(['REQUESTED', 'CREDITED']);
    expect((await stack.depositTransfersOf(depositId)).map((t) => t.amount)).toEqual([700]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 700 });
  });
});
