import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { signWebhook } from '../../lib/webhook-signature';
import { sleep } from '../../lib/wait';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { depositRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

const statuses = (view: { timeline: { status: string }[] }) => view.timeline.map((t) => t.status);

describe('deposit saga end to end (API → Temporal → worker → sandbox intent → webhook or poll → ledger credit)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const balance = async (accountId: string) => (await stack.ledger.getBalance(accountId))!;
  /** A new deposit id for this account, with the sandbox outcome scripted before the request is sent. */
  const scripted = async (accountId: string, scenario?: Record<string, unknown>) => {
    const key = uniqueId('key');
    const depositId = resourceIdFor('dp', accountId, key);
    if (scenario) await stack.scriptSandbox(depositId, scenario);
    return { key, depositId };
  };
  const webhookRows = (depositId: string) =>
    stack.pool.query<{ event_type: string; signalled: boolean }>('SELECT event_type, signalled_at IS NOT NULL AS signalled FROM webhook_events WHERE reference = $1', [depositId]);

  it('happy path: 201 PENDING with checkout_url, then CREDITED by exactly one transfer from provider_clearing', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const { key, depositId } = await scripted(accountId);
    const res = await stack.postDeposit(depositRequest(accountId, 2_500), key);
    expect(res.status).toBe(201);
    expect(res.json).toEqual({ deposit_id: depositId, account_id: accountId, amount: { minor_units: 2_500, currency: 'EUR' }, status: 'PENDING', checkout_url: expect.stringMatching(/\/sandbox\/checkout\/dp_/) });
    expect(res.headers.get('location')).toBe(`/v1/deposits/${depositId}`);
    expect(res.headers.get('idempotent-replayed')).toBeNull();

    const credited = await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(statuses(credited)).toEqual(['REQUESTED', 'PENDING', 'CREDITED']);
    expect(credited.timeline.at(-1).note).toBe('confirmed_by_webhook');
    expect(credited).toMatchObject({ account_id: accountId, provider: 'sandbox', stuck: false, checkout_url: res.json.checkout_url, provider_deposit_id: expect.stringMatching(/^dp_/) });
    expect(await stack.depositTransfersOf(depositId)).toEqual([
      { kind: 'transfer', amount: 2_500, idempotency_key: `${depositId}:credit`, debit_account_id: 'system:provider_clearing:EUR', credit_account_id: accountId },
    ]);
    expect(await balance(accountId)).toMatchObject({ available: 3_500, held: 0, posted: 3_500 });
    expect((await webhookRows(depositId)).rows).toEqual([{ event_type: 'deposit.succeeded', signalled: true }]);
    const readModel = await stack.pool.query('SELECT status, account_id, amount_minor, currency, stuck, credit_transfer_id FROM deposits WHERE deposit_id = $1', [depositId]);
    expect(readModel.rows[0]).toMatchObject({ status: 'CREDITED', account_id: accountId, amount_minor: 2500, currency: 'EUR', stuck: false });
    expect(readModel.rows[0].credit_transfer_id).not.toBeNull();
    await recordHistory(stack.temporal, 'deposit-credited', depositId);
  });

  it('provider failure (deposit.failed): FAILED with its code, no money moved', async () => {
    const accountId = await stack.fundedAccount(500);
    const { key, depositId } = await scripted(accountId, { scenario: 'fail', failure_code: 'card_declined' });
    const res = await stack.postDeposit(depositRequest(accountId, 700), key);
    expect(res.status).toBe(201);
    const failed = await stack.waitForDepositStatus(depositId, ['FAILED']);
    expect(failed.failure_code).toBe('card_declined');
    expect(statuses(failed)).toEqual(['REQUESTED', 'PENDING', 'FAILED']);
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
    expect(await balance(accountId)).toMatchObject({ available: 500, held: 0, posted: 500 });
    await recordHistory(stack.temporal, 'deposit-failed', depositId);
  });

  it('callback never arrives: status polling finds the success and credits once', async () => {
    const accountId = await stack.fundedAccount(0);
    const { key, depositId } = await scripted(accountId, { scenario: 'never_callback' });
    expect((await stack.postDeposit(depositRequest(accountId, 1_200), key)).status).toBe(201);
    const credited = await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(credited.timeline.at(-1).note).toBe('confirmed_by_poll');
    expect((await webhookRows(depositId)).rows).toEqual([]);
    expect((await stack.depositTransfersOf(depositId)).map((t) => t.idempotency_key)).toEqual([`${depositId}:credit`]);
    expect(await balance(accountId)).toMatchObject({ available: 1_200, posted: 1_200 });
    // The scheduled poll ran on the background task queue (background work), not in the money path.
    const history = await stack.temporal.workflow.getHandle(depositId).fetchHistory();
    const polls = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'fetchProviderDeposit');
    expect(polls.map((e) => e.activityTaskScheduledEventAttributes!.taskQueue!.name)).toContain(`${stack.config.TEMPORAL_TASK_QUEUE}-background`);
  });

  it('callback never arrives and the provider failed: polling finds it, nothing moves', async () => {
    const accountId = await stack.fundedAccount(0);
    const { key, depositId } = await scripted(accountId, { scenario: 'never_callback', outcome: 'fail' });
    await stack.postDeposit(depositRequest(accountId, 1_200), key);
    const failed = await stack.waitForDepositStatus(depositId, ['FAILED']);
    expect(failed.failure_code).toBe('payment_declined');
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
    expect(await balance(accountId)).toMatchObject({ available: 0, posted: 0 });
  });

  it('duplicate callbacks (same event twice, then a copy under a new id): credited once', async () => {
    const accountId = await stack.fundedAccount(100);
    const { key, depositId } = await scripted(accountId, { scenario: 'duplicate_callback', also_distinct_id: true });
    await stack.postDeposit(depositRequest(accountId, 900), key);
    await stack.waitForDepositStatus(depositId, ['CREDITED']);
    // Wait for all three deliveries (two distinct event ids) to have been received.
    const deadline = Date.now() + 10_000;
    while ((await webhookRows(depositId)).rows.length < 2 && Date.now() < deadline) await sleep(100);
    await sleep(500);
    expect((await webhookRows(depositId)).rows).toHaveLength(2);
    expect(await stack.depositTransfersOf(depositId)).toHaveLength(1);
    expect(await balance(accountId)).toMatchObject({ available: 1_000, posted: 1_000 });
    expect(statuses(await stack.getDeposit(depositId))).toEqual(['REQUESTED', 'PENDING', 'CREDITED']);
  });

  it('provider refuses the intent: 422 DEPOSIT_REFUSED (replayed as is), saga FAILED, nothing moves', async () => {
    const accountId = await stack.fundedAccount(300);
    const { key, depositId } = await scripted(accountId, { scenario: 'reject' });
    const res = await stack.postDeposit(depositRequest(accountId, 400), key);
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.json).toMatchObject({ code: 'DEPOSIT_REFUSED', deposit_id: depositId, deposit_status: 'FAILED', failure_code: 'payment_refused' });
    const again = await stack.postDeposit(depositRequest(accountId, 400), key);
    expect([again.status, again.text, again.headers.get('idempotent-replayed')]).toEqual([422, res.text, 'true']);
    const failed = await stack.getDeposit(depositId);
    expect(failed).toMatchObject({ status: 'FAILED', failure_code: 'payment_refused' });
    expect(statuses(failed)).toEqual(['REQUESTED', 'FAILED']);
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
    expect(await balance(accountId)).toMatchObject({ available: 300 });
  });

  it('provider briefly unavailable (503): the intent is retried under the same key, one deposit', async () => {
    const accountId = await stack.fundedAccount(0);
    const { key, depositId } = await scripted(accountId, { scenario: 'error_then_ok', fail_attempts: 1 });
    const res = await stack.postDeposit(depositRequest(accountId, 250), key);
    expect(res.status).toBe(201);
    await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(await stack.depositTransfersOf(depositId)).toHaveLength(1);
  });

  it('provider stays pending: polled, marked stuck past the threshold, credited once it resolves', async () => {
    const accountId = await stack.fundedAccount(0);
    const { key, depositId } = await scripted(accountId, { scenario: 'stay_pending' });
    const res = await stack.postDeposit(depositRequest(accountId, 600), key);
    expect(res.status).toBe(201);

    const deadline = Date.now() + 15_000;
    let view = await stack.getDeposit(depositId);
    while (!view.stuck && Date.now() < deadline) {
      await sleep(200);
      view = await stack.getDeposit(depositId);
    }
    expect(view).toMatchObject({ status: 'PENDING', stuck: true });
    const described = await stack.temporal.workflow.getHandle(depositId).describe();
    expect(described.searchAttributes).toMatchObject({ PayoutStuck: [true], PayoutStatus: ['PENDING'], AccountId: [accountId], Currency: ['EUR'], AmountMinor: [600], Provider: ['sandbox'] });

    const providerId = view.provider_deposit_id;
    const resolved = await fetch(`${stack.sandboxUrl}/sandbox/deposits/${providerId}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'succeed', send_webhook: false }) });
    expect(resolved.status).toBe(200);
    const credited = await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(credited.stuck).toBe(false);
    expect(await stack.depositTransfersOf(depositId)).toHaveLength(1);
    const after = await stack.temporal.workflow.getHandle(depositId).describe();
    expect(after.searchAttributes).toMatchObject({ PayoutStuck: [false], PayoutStatus: ['CREDITED'] });
  });

  it('a signed deposit webhook for a closed saga or an unknown reference is acknowledged and moves nothing', async () => {
    const accountId = await stack.fundedAccount(0);
    const { key, depositId } = await scripted(accountId);
    await stack.postDeposit(depositRequest(accountId, 100), key);
    await stack.waitForDepositStatus(depositId, ['CREDITED']);
    await stack.temporal.workflow.getHandle(depositId).result();

    const deliver = async (reference: string) => {
      const body = JSON.stringify({ id: uniqueId('evt'), type: 'deposit.succeeded', created_at: new Date().toISOString(), data: { object: { id: 'dp_x', reference, status: 'succeeded' } } });
      const res = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, body, Math.floor(Date.now() / 1000)) },
        body,
      });
      return { status: res.status, body: await res.json() };
    };
    expect(await deliver(depositId)).toEqual({ status: 200, body: { received: true, duplicate: false, delivered: 'saga_closed' } });
    expect(await deliver(resourceIdFor('dp', accountId, uniqueId('never-used')))).toEqual({ status: 200, body: { received: true, duplicate: false, delivered: 'unknown_reference' } });
    expect(await stack.depositTransfersOf(depositId)).toHaveLength(1);
    expect(await balance(accountId)).toMatchObject({ posted: 100 });
  });
});

describe('deposit saga when the intent is not created within the sync deadline', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({ SAGA_SYNC_DEADLINE_MS: '300' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('answers 202 REQUESTED (replayed as is); the saga goes on to PENDING and CREDITED', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('key');
    const depositId = resourceIdFor('dp', accountId, key);
    await stack.scriptSandbox(depositId, { scenario: 'slow', delay_ms: 5_000 });
    const sentAt = Date.now();
    const res = await stack.postDeposit(depositRequest(accountId, 800), key);
    expect(res.status).toBe(202);
    expect(Date.now() - sentAt).toBeLessThan(2_500); // the deadline, not the provider's 5 s, decides when we answer
    expect(res.json).toEqual({ deposit_id: depositId, account_id: accountId, amount: { minor_units: 800, currency: 'EUR' }, status: 'REQUESTED' });
    expect(await stack.getDeposit(depositId)).toMatchObject({ status: 'REQUESTED' });
    const again = await stack.postDeposit(depositRequest(accountId, 800), key);
    expect([again.status, again.text, again.headers.get('idempotent-replayed')]).toEqual([202, res.text, 'true']);

    const credited = await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(credited.checkout_url).toMatch(/\/sandbox\/checkout\//);
    expect(await stack.depositTransfersOf(depositId)).toHaveLength(1);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 800 });
  });
});
