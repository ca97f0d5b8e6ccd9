import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { verifyWebhookSignature } from '../../lib/webhook-signature';
import { depositBody, payoutBody, sleep, startReceiver, startSandbox, wallet, WEBHOOK_SECRET, type Receiver, type Sandbox } from '../support/sandbox';

const waitOpts = { timeout: 3_000, interval: 10 };

describe('sandbox scenarios', () => {
  let receiver: Receiver;
  let sandbox: Sandbox;

  beforeAll(async () => {
    receiver = await startReceiver();
    sandbox = await startSandbox({ webhookUrl: receiver.url });
  });
  afterAll(async () => {
    await sandbox?.close();
    await receiver?.close();
  });

  const hooksFor = (reference: string) => receiver.forReference(reference);
  const statusOf = async (id: string) => (await sandbox.get(`/v1/payouts/${id}`)).body.status as string;

  it('settle (default): the payout settles and a signed payout.settled webhook follows', async () => {
    const body = payoutBody();
    const created = await sandbox.submitPayout(body);
    await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(1), waitOpts);
    const [hook] = hooksFor(body.reference);
    expect(hook!.headers['content-type']).toBe('application/json');
    expect(verifyWebhookSignature(WEBHOOK_SECRET, hook!.headers['x-signature'], hook!.rawBody).ok).toBe(true);
    expect(hook!.event).toMatchObject({ type: 'payout.settled', data: { object: { id: created.body.id, status: 'settled', reference: body.reference } } });
    expect(hook!.event.id).toMatch(/^evt_/);
    expect(await statusOf(created.body.id)).toBe('settled');
    // The webhook carries only the masked destination.
    expect(hook!.rawBody).not.toContain(body.destination.iban);
  });

  it('fail: a magic wallet id selects the failure and its code', async () => {
    const body = payoutBody({ destination: wallet('sandbox:fail:insufficient_provider_funds') });
    const created = await sandbox.submitPayout(body);
    expect(created.status).toBe(201);
    await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(1), waitOpts);
    expect(hooksFor(body.reference)[0]!.event).toMatchObject({ type: 'payout.failed', data: { object: { status: 'failed', failure_code: 'insufficient_provider_funds' } } });
    const polled = await sandbox.get(`/v1/payouts/${created.body.id}`);
    expect(polled.body).toMatchObject({ status: 'failed', failure_code: 'insufficient_provider_funds' });
  });

  it('fail via a magic card token uses the default failure code', async () => {
    const body = payoutBody({ destination: { method: 'card', token: 'sandbox:fail' } });
    const created = await sandbox.submitPayout(body);
    expect(created.body.destination).toEqual({ method: 'card', last4: 'fail' });
    await vi.waitFor(async () => expect((await sandbox.get(`/v1/payouts/${created.body.id}`)).body.failure_code).toBe('account_closed'), waitOpts);
  });

  it('an IBAN payout is scripted through metadata.sandbox_scenario', async () => {
    const body = payoutBody({ metadata: { sandbox_scenario: 'fail:account_closed' } });
    const created = await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect(await statusOf(created.body.id)).toBe('failed'), waitOpts);
  });

  it('never_callback: the status becomes final for polling, but no webhook is ever sent', async () => {
    const body = payoutBody({ destination: wallet('sandbox:never_callback') });
    const created = await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect(await statusOf(created.body.id)).toBe('settled'), waitOpts);
    await sleep(150);
    expect(hooksFor(body.reference)).toHaveLength(0);
    expect(await sandbox.events(body.reference)).toEqual([]);
  });

  it('never_callback can end in failure too', async () => {
    const body = payoutBody({ destination: wallet('sandbox:never_callback:fail') });
    const created = await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect(await statusOf(created.body.id)).toBe('failed'), waitOpts);
    expect(hooksFor(body.reference)).toHaveLength(0);
  });

  it('stay_pending: nothing happens until a control call resolves it; then settle, return; bad transitions are 409', async () => {
    const body = payoutBody({ destination: wallet('sandbox:stay_pending') });
    const created = await sandbox.submitPayout(body);
    await sleep(150);
    expect(await statusOf(created.body.id)).toBe('pending');
    expect(hooksFor(body.reference)).toHaveLength(0);

    const early = await sandbox.call('POST', `/sandbox/payouts/${created.body.id}/resolve`, { outcome: 'return' });
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('invalid_transition');

    const settled = await sandbox.call('POST', `/sandbox/payouts/${created.body.id}/resolve`, { outcome: 'settle' });
    expect(settled.status).toBe(200);
    expect(settled.body.status).toBe('settled');
    const returned = await sandbox.call('POST', `/sandbox/payouts/${created.body.id}/resolve`, { outcome: 'return', return_reason: 'beneficiary_deceased' });
    expect(returned.body).toMatchObject({ status: 'returned', return_reason: 'beneficiary_deceased' });
    await vi.waitFor(() => expect(hooksFor(body.reference).map((h) => h.event.type).sort()).toEqual(['payout.returned', 'payout.settled']), waitOpts);

    const again = await sandbox.call('POST', `/sandbox/payouts/${created.body.id}/resolve`, { outcome: 'settle' });
    expect(again.status).toBe(409);
    const unknown = await sandbox.call('POST', '/sandbox/payouts/po_nope/resolve', { outcome: 'settle' });
    expect(unknown.status).toBe(404);
  });

  it('stay_pending resolved as fail, silently when asked', async () => {
    const body = payoutBody({ destination: wallet('sandbox:stay_pending') });
    const created = await sandbox.submitPayout(body);
    const failed = await sandbox.call('POST', `/sandbox/payouts/${created.body.id}/resolve`, { outcome: 'fail', failure_code: 'account_closed', send_webhook: false });
    expect(failed.body).toMatchObject({ status: 'failed', failure_code: 'account_closed' });
    await sleep(100);
    expect(hooksFor(body.reference)).toHaveLength(0);
  });

  it('duplicate_callback: the same event (same id, same bytes) twice, plus a distinct id with the same content', async () => {
    const body = payoutBody();
    await sandbox.setScenario(body.reference, { scenario: 'duplicate_callback', also_distinct_id: true });
    await sandbox.submitPayout(body);
    await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(3), waitOpts);
    const [first, second, third] = hooksFor(body.reference);
    expect(second!.event.id).toBe(first!.event.id);
    expect(second!.rawBody).toBe(first!.rawBody);
    expect(third!.event.id).not.toBe(first!.event.id);
    expect({ ...third!.event, id: first!.event.id }).toEqual(first!.event);
    for (const hook of [first, second, third]) expect(verifyWebhookSignature(WEBHOOK_SECRET, hook!.headers['x-signature'], hook!.rawBody).ok).toBe(true);
    const events = await sandbox.events(body.reference);
    expect(events.map((e) => e.event_id)).toEqual([first!.event.id, first!.event.id, third!.event.id]);
  });

  it('duplicate_callback via magic value: exactly two deliveries of one event', async () => {
    const body = payoutBody({ destination: wallet('sandbox:duplicate_callback') });
    await sandbox.submitPayout(body);
    await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(2), waitOpts);
    await sleep(100);
    const hooks = hooksFor(body.reference);
    expect(hooks).toHaveLength(2);
    expect(new Set(hooks.map((h) => h.event.id)).size).toBe(1);
  });

  it('out_of_order: payout.returned arrives before the older payout.settled', async () => {
    const body = payoutBody({ destination: wallet('sandbox:out_of_order:account_closed') });
    const created = await sandbox.submitPayout(body);
    await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(2), waitOpts);
    const [first, second] = hooksFor(body.reference);
    expect(first!.event.type).toBe('payout.returned');
    expect(second!.event.type).toBe('payout.settled');
    expect(Date.parse(second!.event.created_at)).toBeLessThan(Date.parse(first!.event.created_at));
    expect(second!.event.data.object.status).toBe('settled');
    expect(first!.event.data.object).toMatchObject({ status: 'returned', return_reason: 'account_closed' });
    expect(await statusOf(created.body.id)).toBe('returned');
  });

  it('return_after_settlement: settled and its webhook, then returned and its webhook', async () => {
    const body = payoutBody();
    await sandbox.setScenario(body.reference, { scenario: 'return_after_settlement', return_reason: 'incorrect_account', return_delay_ms: 80 });
    const created = await sandbox.submitPayout(body);
    await vi.waitFor(async () => expect(await statusOf(created.body.id)).toBe('settled'), waitOpts);
    await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(2), waitOpts);
    const [settled, returned] = hooksFor(body.reference);
    expect(settled!.event.type).toBe('payout.settled');
    expect(returned!.event.type).toBe('payout.returned');
    const polled = await sandbox.get(`/v1/payouts/${created.body.id}`);
    expect(polled.body).toMatchObject({ status: 'returned', return_reason: 'incorrect_account' });
    expect(Date.parse(polled.body.returned_at)).toBeGreaterThan(Date.parse(polled.body.settled_at));
  });

  it('slow: the client times out, the payout exists anyway, and the retry gets the same payout', async () => {
    const key = randomUUID();
    const body = payoutBody({ destination: wallet('sandbox:slow:400') });
    await expect(sandbox.submitPayout(body, key, AbortSignal.timeout(50))).rejects.toThrow();
    const polled = await sandbox.get(`/v1/payouts?reference=${body.reference}`);
    expect(polled.status).toBe(200);
    const started = Date.now();
    const retry = await sandbox.submitPayout(body, key);
    expect(retry.status).toBe(201);
    expect(retry.body.id).toBe(polled.body.id);
    // The retry waited for the first (still held back) answer rather than creating anything.
    expect(Date.now() - started).toBeGreaterThan(100);
  });

  it('error_then_ok: 503 for the first fail_attempts submissions of a key, creating nothing, then 201', async () => {
    const key = randomUUID();
    const body = payoutBody({ destination: wallet('sandbox:error_then_ok:2') });
    const first = await sandbox.submitPayout(body, key);
    const second = await sandbox.submitPayout(body, key);
    expect([first.status, second.status]).toEqual([503, 503]);
    expect(first.body.error.code).toBe('temporarily_unavailable');
    expect((await sandbox.get(`/v1/payouts?reference=${body.reference}`)).status).toBe(404);
    const third = await sandbox.submitPayout(body, key);
    expect(third.status).toBe(201);
    expect(third.headers.get('idempotent-replayed')).toBeNull();
    const fourth = await sandbox.submitPayout(body, key);
    expect(fourth.headers.get('idempotent-replayed')).toBe('true');
    expect(fourth.body.id).toBe(third.body.id);
  });

  it('reject: 422 invalid_destination synchronously, nothing created, the answer is replayed', async () => {
    const key = randomUUID();
    const body = payoutBody({ destination: { method: 'card', token: 'sandbox:reject' } });
    const res = await sandbox.submitPayout(body, key);
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('invalid_destination');
    expect((await sandbox.get(`/v1/payouts?reference=${body.reference}`)).status).toBe(404);
    const replay = await sandbox.submitPayout(body, key);
    expect(replay.status).toBe(422);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  });

  it('a scenario registered for a reference wins over a magic value, and can be read back', async () => {
    const body = payoutBody({ destination: wallet('sandbox:settle') });
    const put = await sandbox.setScenario(body.reference, { scenario: 'fail', failure_code: 'account_closed', callback_delay_ms: 10 });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ reference: body.reference, scenario: { scenario: 'fail', failure_code: 'account_closed', callback_delay_ms: 10 }, applied_to: [] });
    const read = await sandbox.get(`/sandbox/scenarios/${body.reference}`);
    expect(read.body.scenario.scenario).toBe('fail');
    await sandbox.submitPayout(body);
    await vi.waitFor(() => expect(hooksFor(body.reference).map((h) => h.event.type)).toEqual(['payout.failed']), waitOpts);
  });

  it('a scenario registered after submission re-scripts the pending payout', async () => {
    const body = payoutBody({ destination: wallet('sandbox:stay_pending') });
    const created = await sandbox.submitPayout(body);
    const put = await sandbox.setScenario(body.reference, { scenario: 'fail', failure_code: 'account_closed' });
    expect(put.body.applied_to).toEqual([created.body.id]);
    await vi.waitFor(async () => expect(await statusOf(created.body.id)).toBe('failed'), waitOpts);
  });

  it('refuses unknown scenarios and bad parameters with 400', async () => {
    const unknownMagic = await sandbox.submitPayout(payoutBody({ destination: wallet('sandbox:explode') }));
    expect(unknownMagic.status).toBe(400);
    expect(unknownMagic.body.error.code).toBe('invalid_scenario');
    const badParam = await sandbox.submitPayout(payoutBody({ destination: wallet('sandbox:slow:soon') }));
    expect(badParam.status).toBe(400);
    const badControl = await sandbox.setScenario(`ref-${randomUUID()}`, { scenario: 'fail', failure_cod: 'typo' });
    expect(badControl.status).toBe(400);
    expect(badControl.body.error.code).toBe('invalid_request');
    const missing = await sandbox.get(`/sandbox/scenarios/ref-${randomUUID()}`);
    expect(missing.status).toBe(404);
  });

  describe('deposits', () => {
    it('succeed by default with a deposit.succeeded webhook', async () => {
      const body = depositBody();
      const created = await sandbox.submitDeposit(body);
      await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(1), waitOpts);
      expect(hooksFor(body.reference)[0]!.event).toMatchObject({ type: 'deposit.succeeded', data: { object: { id: created.body.id, status: 'succeeded' } } });
      expect((await sandbox.get(`/v1/deposits/${created.body.id}`)).body.status).toBe('succeeded');
    });

    it('fail through metadata.sandbox_scenario', async () => {
      const body = depositBody({ metadata: { sandbox_scenario: 'fail:card_declined' } });
      const created = await sandbox.submitDeposit(body);
      await vi.waitFor(() => expect(hooksFor(body.reference)).toHaveLength(1), waitOpts);
      expect(hooksFor(body.reference)[0]!.event).toMatchObject({ type: 'deposit.failed', data: { object: { status: 'failed', failure_code: 'card_declined' } } });
      expect((await sandbox.get(`/v1/deposits?reference=${body.reference}`)).body.id).toBe(created.body.id);
    });

    it('never_callback, stay_pending + resolve, and a scenario object in metadata', async () => {
      const silent = depositBody({ metadata: { sandbox_scenario: { scenario: 'never_callback', callback_delay_ms: 10 } } });
      const silentCreated = await sandbox.submitDeposit(silent);
      await vi.waitFor(async () => expect((await sandbox.get(`/v1/deposits/${silentCreated.body.id}`)).body.status).toBe('succeeded'), waitOpts);

      const stuck = depositBody({ metadata: { sandbox_scenario: 'sandbox:stay_pending' } });
      const stuckCreated = await sandbox.submitDeposit(stuck);
      await sleep(100);
      expect((await sandbox.get(`/v1/deposits/${stuckCreated.body.id}`)).body.status).toBe('pending');
      const resolved = await sandbox.call('POST', `/sandbox/deposits/${stuckCreated.body.id}/resolve`, { outcome: 'succeed' });
      expect(resolved.body.status).toBe('succeeded');
      await vi.waitFor(() => expect(hooksFor(stuck.reference).map((h) => h.event.type)).toEqual(['deposit.succeeded']), waitOpts);
      expect(hooksFor(silent.reference)).toHaveLength(0);
    });

    it('refuses payout-only scenarios', async () => {
      const res = await sandbox.submitDeposit(depositBody({ metadata: { sandbox_scenario: 'out_of_order' } }));
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_scenario');
    });
  });
});
