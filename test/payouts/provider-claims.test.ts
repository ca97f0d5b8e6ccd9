import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { signWebhook } from '../../lib/webhook-signature';
import { sleep } from '../../lib/wait';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

/**
 * A webhook is a claim and a provider's answer is a claim: money moves only when the provider's own
 * record says the same status, amount, currency and destination. Each case below moved money before.
 */
describe('provider claims are checked against the provider record before money moves', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    // A return window long enough to send a forged return while the saga still waits for one.
    stack = await startSagaStack({ PAYOUT_RETURN_WINDOW_MS: '60000', FOUR_EYES_ACTIONS: 'none' }); // staff resolve alone here; four eyes: test/ops/four-eyes.test.ts
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  /** A webhook signed with the real secret (a leaked secret, a provider bug, a replayed capture with a new id). */
  async function forgeWebhook(type: string, object: Record<string, unknown>, eventId = uniqueId('evt_forged'), createdAt = new Date().toISOString()) {
    const body = JSON.stringify({ id: eventId, type, created_at: createdAt, data: { object } });
    const res = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, body, Date.now() / 1000) },
      body,
    });
    return { status: res.status, json: (await res.json()) as any, eventId };
  }

  async function providerPayout(reference: string) {
    const res = await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${encodeURIComponent(reference)}`);
    expect(res.status).toBe(200);
    return (await res.json()) as { id: string; status: string; amount: { minor_units: number; currency: string } };
  }

  async function incidentsOf(reference: string, atLeast = 1, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await stack.pool.query<{ kind: string; fields: string[]; event_id: string | null; observed: any; expected: any }>(
        'SELECT kind, fields, event_id, observed, expected FROM provider_incidents WHERE reference = $1 ORDER BY id',
        [reference],
      );
      if (rows.length >= atLeast || Date.now() > deadline) return rows;
      await sleep(150);
    }
  }

  async function submittedPendingPayout(minor = 1_000) {
    const accountId = await stack.fundedAccount(10_000);
    const res = await stack.postPayout(payoutRequest(accountId, minor, 'sandbox:stay_pending'), uniqueId('key'));
    expect(res.status).toBe(201);
    const payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);
    return { accountId, payoutId, provider: await providerPayout(payoutId) };
  }

  it('a signed payout.settled for a payout the provider still has pending posts nothing', async () => {
    const { accountId, payoutId, provider } = await submittedPendingPayout();
    const forged = await forgeWebhook('payout.settled', { id: provider.id, reference: payoutId, status: 'settled' });
    expect(forged.status).toBe(200);
    expect(forged.json.delivered).toBe('signalled');

    const [incident] = await incidentsOf(payoutId);
    expect(incident).toMatchObject({ kind: 'claim_not_confirmed', fields: ['status'], event_id: forged.eventId, observed: { status: 'pending' }, expected: { status: 'settled' } });
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');
    expect(await stack.transfersOf(payoutId)).toEqual([{ kind: 'hold', amount: 1_000 }]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 9_000, held: 1_000, posted: 10_000 });

    // When the provider really settles, its own (confirmed) callback settles the payout once.
    const resolved = await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'settle' }) });
    expect(resolved.status).toBe(200);
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 1_000 },
      { kind: 'post', amount: 1_000 },
    ]);
  });

  it('a signed payout.failed for a payout the provider may still pay releases nothing', async () => {
    const { accountId, payoutId, provider } = await submittedPendingPayout(2_000);
    const forged = await forgeWebhook('payout.failed', { id: provider.id, reference: payoutId, status: 'failed', failure_code: 'account_closed' });
    expect(forged.status).toBe(200);
    const [incident] = await incidentsOf(payoutId);
    expect(incident).toMatchObject({ kind: 'claim_not_confirmed', event_id: forged.eventId, expected: { status: 'failed' } });
    await sleep(500);
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');
    expect(await stack.transfersOf(payoutId)).toEqual([{ kind: 'hold', amount: 2_000 }]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 8_000, held: 2_000 });

    // The provider's real failure releases the hold once.
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'fail' }) });
    await stack.waitForStatus(payoutId, ['FAILED']);
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 2_000 },
      { kind: 'void', amount: 2_000 },
    ]);
  });

  it('a signed payout.returned on a payout the provider reports settled refunds nothing', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const res = await stack.postPayout(payoutRequest(accountId, 3_000), uniqueId('key'));
    const payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SETTLED']);
    const provider = await providerPayout(payoutId);
    expect(provider.status).toBe('settled');

    const forged = await forgeWebhook('payout.returned', { id: provider.id, reference: payoutId, status: 'returned', return_reason: 'account_closed' });
    expect(forged.status).toBe(200);
    const [incident] = await incidentsOf(payoutId);
    expect(incident).toMatchObject({ kind: 'claim_contradicted', event_id: forged.eventId, observed: { status: 'settled' }, expected: { status: 'returned' } });
    await sleep(500);
    expect((await stack.getPayout(payoutId)).status).toBe('SETTLED');
    expect(await stack.transfersOf(payoutId)).toEqual([
      { kind: 'hold', amount: 3_000 },
      { kind: 'post', amount: 3_000 },
    ]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 7_000, posted: 7_000 });

    // A real return, in the provider's record, is refunded once.
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'return' }) });
    await stack.waitForStatus(payoutId, ['RETURNED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post', 'refund']);
    await recordHistory(stack.temporal, 'payout-return-claim-contradicted-then-returned', payoutId);
  });

  it('a signed deposit.succeeded for a deposit the provider holds pending credits nothing', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('key');
    await stack.scriptSandbox(resourceIdFor('dp', accountId, key), { scenario: 'stay_pending' });
    const res = await stack.postDeposit(depositRequest(accountId, 4_000), key);
    expect(res.status).toBe(201);
    const depositId = res.json.deposit_id as string;
    const providerDeposit = (await (await fetch(`${stack.sandboxUrl}/v1/deposits?reference=${depositId}`)).json()) as { id: string; status: string };
    expect(providerDeposit.status).toBe('pending');
    const forged = await forgeWebhook('deposit.succeeded', { id: providerDeposit.id, reference: depositId, status: 'succeeded' });
    expect(forged.status).toBe(200);
    const [incident] = await incidentsOf(depositId);
    expect(incident).toMatchObject({ kind: 'claim_not_confirmed', event_id: forged.eventId, observed: { status: 'pending' }, expected: { status: 'succeeded' } });
    await sleep(500);
    expect((await stack.getDeposit(depositId)).status).toBe('PENDING');
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 0, posted: 0 });

    await fetch(`${stack.sandboxUrl}/sandbox/deposits/${providerDeposit.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'succeed' }) });
    const credited = await stack.waitForDepositStatus(depositId, ['CREDITED']);
    expect(credited.timeline.at(-1)).toMatchObject({ status: 'CREDITED', note: 'confirmed_by_webhook' });
    expect((await stack.depositTransfersOf(depositId)).map((t) => t.amount)).toEqual([4_000]);
    await recordHistory(stack.temporal, 'deposit-claim-not-confirmed-then-credited', depositId);
  });

  it('a provider payout with our reference but another amount and IBAN is never adopted: an incident, stuck for staff', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const key = uniqueId('key');
    const payoutId = resourceIdFor('po', accountId, key);
    // Someone (a bug, an insider, a replayed request) got a payout with our reference to the provider first.
    const planted = await fetch(`${stack.sandboxUrl}/v1/payouts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': uniqueId('other') },
      body: JSON.stringify({ reference: payoutId, amount: { minor_units: 90_000_000, currency: 'EUR' }, destination: { method: 'bank_transfer', iban: 'DE89370400440532013000' } }),
    });
    expect(planted.status).toBe(201);

    const res = await stack.postPayout(payoutRequest(accountId, 1_000, 'wallet-mine'), key);
    expect(res.status).toBe(201);
    expect(res.json.payout_id).toBe(payoutId);
    const [incident] = await incidentsOf(payoutId);
    expect(incident).toMatchObject({ kind: 'record_mismatch', fields: ['amount', 'destination'], observed: { amount: { minor_units: 90_000_000, currency: 'EUR' }, destination: { method: 'bank_transfer', last4: '3000' } } });
    const stuck = await stack.waitForStatus(payoutId, ['SUBMITTED']);
    await sleep(2_500); // the planted payout settles at the provider (and calls back) meanwhile
    const now = await stack.getPayout(payoutId);
    expect(now).toMatchObject({ status: 'SUBMITTED', stuck: true });
    expect(now.provider_payout_id).toBeUndefined();
    expect(stuck.timeline.at(-1).note).toBe('awaiting_provider');
    expect(await stack.transfersOf(payoutId)).toEqual([{ kind: 'hold', amount: 1_000 }]);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 9_000, held: 1_000, posted: 10_000 });

    // Staff see it, with the reason, and it is counted for alerting.
    const staff = `Bearer ${await (await import('../../lib/tokens')).signToken({ sub: 'finance-1', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
    const listed = await fetch(`${stack.apiUrl}/v1/ops/incidents?reference=${payoutId}`, { headers: { authorization: staff } });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as any).items[0]).toMatchObject({ saga_kind: 'payout', reference: payoutId, kind: 'record_mismatch' });
    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/provider_incidents\{kind="record_mismatch",service="api"\} [1-9]/);

    // Staff fail it (the record is not our payout, so it does not say ours was paid): the hold is released once.
    const failed = await fetch(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/resolve`, {
      method: 'POST',
      headers: { authorization: staff, 'content-type': 'application/json' },
      body: JSON.stringify({ outcome: 'fail', reason: 'provider record belongs to another payout; case 77' }),
    });
    expect(failed.status).toBe(200);
    await stack.waitForStatus(payoutId, ['FAILED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'void']);
    await recordHistory(stack.temporal, 'payout-record-mismatch-failed-by-staff', payoutId);
  });

  it('an event id is handled once whatever its type: the same id with another type or body is refused and counted', async () => {
    const { payoutId, provider } = await submittedPendingPayout(500);
    const eventId = uniqueId('evt_reused');
    const createdAt = new Date().toISOString();
    const first = await forgeWebhook('payout.updated', { id: provider.id, reference: payoutId, status: 'pending' }, eventId, createdAt);
    expect(first).toMatchObject({ status: 200, json: { duplicate: false, delivered: 'ignored_type' } });
    const again = await forgeWebhook('payout.updated', { id: provider.id, reference: payoutId, status: 'pending' }, eventId, createdAt);
    expect(again.status).toBe(200);
    expect(again.json.duplicate).toBe(true);

    const reused = await forgeWebhook('payout.failed', { id: provider.id, reference: payoutId, status: 'failed' }, eventId, createdAt);
    expect(reused.status).toBe(409);
    expect(reused.json.code).toBe('WEBHOOK_EVENT_CONFLICT');
    const { rows } = await stack.pool.query<{ event_type: string; conflicting_deliveries: number; signalled: boolean }>(
      'SELECT event_type, conflicting_deliveries, signalled_at IS NOT NULL AS signalled FROM webhook_events WHERE provider = $1 AND event_id = $2',
      ['sandbox', eventId],
    );
    expect(rows).toEqual([{ event_type: 'payout.updated', conflicting_deliveries: 1, signalled: true }]);
    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/webhook_event_conflicts_total\{provider="sandbox",service="api"\} 1/);
    await sleep(500);
    expect((await stack.getPayout(payoutId)).status).toBe('SUBMITTED');
    expect(await stack.transfersOf(payoutId)).toEqual([{ kind: 'hold', amount: 500 }]);
    expect(await incidentsOf(payoutId, 1, 500)).toEqual([]);
  });
});

describe('a return reported after the payout saga closed', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack();
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('is refunded only if the provider record says returned', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const res = await stack.postPayout(payoutRequest(accountId, 1_500), uniqueId('key'));
    const payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SETTLED']);
    await stack.temporal.workflow.getHandle(payoutId).result(); // the (short) return window has closed
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };

    const body = JSON.stringify({ id: uniqueId('evt_forged'), type: 'payout.returned', created_at: new Date().toISOString(), data: { object: { id: provider.id, reference: payoutId, status: 'returned' } } });
    const forged = await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-signature': signWebhook(stack.config.SANDBOX_WEBHOOK_SECRET, body, Date.now() / 1000) },
      body,
    });
    expect(((await forged.json()) as any).delivered).toBe('return_saga_started');
    const outcome = await stack.temporal.workflow.getHandle(`${payoutId}:return`).result();
    expect(outcome).toMatchObject({ refunded: false, detail: expect.stringContaining('settled') });
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    const { rows } = await stack.pool.query('SELECT kind FROM provider_incidents WHERE reference = $1', [payoutId]);
    expect(rows).toEqual([{ kind: 'claim_contradicted' }]);
    expect((await stack.getPayout(payoutId)).status).toBe('SETTLED');
  });
});
