import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { verifyWebhookSignature } from '../../lib/webhook-signature';
import { depositBody, payoutBody, sandboxSchema, sleep, startReceiver, startSandbox, WEBHOOK_SECRET, type Receiver, type Sandbox } from '../support/sandbox';

const waitOpts = { timeout: 3_000, interval: 10 };

/** Deposits charged back after they succeeded: succeeded → reversed, by a control call or a scripted scenario. */
describe('sandbox deposit reversals', () => {
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

  const hooksFor = (reference: string, type?: string) => receiver.forReference(reference).filter((h) => type === undefined || h.event.type === type);
  const depositOf = async (id: string) => (await sandbox.get(`/v1/deposits/${id}`)).body;
  const reverse = (id: string, body?: Record<string, unknown>) => sandbox.call('POST', `/sandbox/deposits/${id}/reverse`, body);

  /** A deposit that has succeeded, and its deposit.succeeded webhook received. */
  async function succeededDeposit(overrides: Record<string, unknown> = {}) {
    const body = depositBody(overrides);
    const created = await sandbox.submitDeposit(body);
    expect(created.status).toBe(201);
    await vi.waitFor(() => expect(hooksFor(body.reference, 'deposit.succeeded')).toHaveLength(1), waitOpts);
    expect((await depositOf(created.body.id)).status).toBe('succeeded');
    return { body, id: created.body.id as string };
  }

  it('reverses a succeeded deposit: status, fields, lookups, and one signed deposit.reversed webhook', async () => {
    const { body, id } = await succeededDeposit();
    const succeeded = await depositOf(id);

    const res = await reverse(id, {});
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id, object: 'deposit', reference: body.reference, status: 'reversed', amount: body.amount, reversal_reason: 'chargeback', succeeded_at: succeeded.succeeded_at });
    expect(Date.parse(res.body.reversed_at)).toBeGreaterThanOrEqual(Date.parse(succeeded.succeeded_at));
    expect(res.body.updated_at).toBe(res.body.reversed_at);

    // Both lookups show it.
    expect(await depositOf(id)).toEqual(res.body);
    expect((await sandbox.get(`/v1/deposits?reference=${encodeURIComponent(body.reference)}`)).body).toEqual(res.body);

    await vi.waitFor(() => expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(1), waitOpts);
    const [hook] = hooksFor(body.reference, 'deposit.reversed');
    const [succeededHook] = hooksFor(body.reference, 'deposit.succeeded');
    expect(hook!.headers['content-type']).toBe('application/json');
    expect(verifyWebhookSignature(WEBHOOK_SECRET, hook!.headers['x-signature'], hook!.rawBody).ok).toBe(true);
    expect(hook!.event.id).toMatch(/^evt_/);
    expect(hook!.event.id).not.toBe(succeededHook!.event.id);
    // The same envelope as the other events, carrying the reversed deposit as it is now.
    expect(Object.keys(hook!.event).sort()).toEqual(Object.keys(succeededHook!.event).sort());
    expect(hook!.event).toEqual({ id: hook!.event.id, type: 'deposit.reversed', created_at: res.body.reversed_at, data: { object: res.body } });

    // Marked delivered once the receiver's answer is back, a moment after the receiver saw it.
    await vi.waitFor(
      async () =>
        expect((await sandbox.events(body.reference)).map((d) => [d.type, d.state])).toEqual([
          ['deposit.succeeded', 'delivered'],
          ['deposit.reversed', 'delivered'],
        ]),
      waitOpts,
    );
  });

  it('repeating the reversal answers 200 with the same deposit and sends nothing new', async () => {
    const { body, id } = await succeededDeposit();
    const first = await reverse(id);
    expect(first.status).toBe(200);
    await vi.waitFor(() => expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(1), waitOpts);

    const again = await reverse(id, { reason: 'fraud' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(again.body.reversal_reason).toBe('chargeback');
    await sleep(150);
    expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(1);
    expect((await sandbox.events(body.reference)).filter((d) => d.type === 'deposit.reversed')).toHaveLength(1);
  });

  it('takes a reason, refuses a malformed body, and is 404 for what is no deposit', async () => {
    const { body, id } = await succeededDeposit();
    expect((await reverse(id, { reason: 'Not A Code' })).status).toBe(400);
    const typo = await reverse(id, { send_webhooks: false });
    expect([typo.status, typo.body.error.code]).toEqual([400, 'invalid_request']);
    expect((await depositOf(id)).status).toBe('succeeded');

    const res = await reverse(id, { reason: 'friendly_fraud' });
    expect(res.body).toMatchObject({ status: 'reversed', reversal_reason: 'friendly_fraud' });
    await vi.waitFor(() => expect(hooksFor(body.reference, 'deposit.reversed')[0]?.event.data.object).toMatchObject({ reversal_reason: 'friendly_fraud' }), waitOpts);

    expect((await reverse('dp_nope')).status).toBe(404);
    const payout = await sandbox.submitPayout(payoutBody());
    const onPayout = await reverse(payout.body.id);
    expect([onPayout.status, onPayout.body.error.code]).toEqual([404, 'not_found']);
  });

  it('reversing a pending or a failed deposit is 409 invalid_transition and changes nothing', async () => {
    const pending = depositBody({ metadata: { sandbox_scenario: 'stay_pending' } });
    const pendingId = (await sandbox.submitDeposit(pending)).body.id;
    const failed = depositBody({ metadata: { sandbox_scenario: 'fail:card_declined' } });
    const failedId = (await sandbox.submitDeposit(failed)).body.id;
    await vi.waitFor(async () => expect((await depositOf(failedId)).status).toBe('failed'), waitOpts);

    for (const [id, status] of [
      [pendingId, 'pending'],
      [failedId, 'failed'],
    ] as const) {
      const res = await reverse(id, {});
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('invalid_transition');
      expect(res.body.deposit).toMatchObject({ id, status });
      const now = await depositOf(id);
      expect(now.status).toBe(status);
      expect(now.reversed_at).toBeUndefined();
    }
    await sleep(100);
    expect(hooksFor(pending.reference)).toHaveLength(0);
    expect(hooksFor(failed.reference).map((h) => h.event.type)).toEqual(['deposit.failed']);

    // The pending one can still succeed, and then be reversed.
    await sandbox.call('POST', `/sandbox/deposits/${pendingId}/resolve`, { outcome: 'succeed', send_webhook: false });
    expect((await reverse(pendingId)).body.status).toBe('reversed');
  });

  it('send_webhook: false reverses silently', async () => {
    const { body, id } = await succeededDeposit();
    const res = await reverse(id, { send_webhook: false });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('reversed');
    await sleep(150);
    expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(0);
    expect((await sandbox.events(body.reference)).map((d) => d.type)).toEqual(['deposit.succeeded']);
    expect((await depositOf(id)).status).toBe('reversed');
  });

  describe('scenario reverse_after_ms', () => {
    it('a deposit reverses by itself that long after it succeeded, with its signed webhook', async () => {
      const body = depositBody();
      const put = await sandbox.setScenario(body.reference, { scenario: 'settle', reverse_after_ms: 200 });
      expect(put.status).toBe(200);
      expect(put.body.scenario).toEqual({ scenario: 'settle', reverse_after_ms: 200 });
      const created = await sandbox.submitDeposit(body);
      await vi.waitFor(async () => expect((await depositOf(created.body.id)).status).toBe('succeeded'), waitOpts);
      expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(0);

      await vi.waitFor(async () => expect((await depositOf(created.body.id)).status).toBe('reversed'), waitOpts);
      const reversed = await depositOf(created.body.id);
      expect(reversed).toMatchObject({ reversal_reason: 'chargeback', amount: body.amount });
      expect(Date.parse(reversed.reversed_at) - Date.parse(reversed.succeeded_at)).toBeGreaterThanOrEqual(190);

      await vi.waitFor(() => expect(hooksFor(body.reference).map((h) => h.event.type)).toEqual(['deposit.succeeded', 'deposit.reversed']), waitOpts);
      const hook = hooksFor(body.reference, 'deposit.reversed')[0]!;
      expect(verifyWebhookSignature(WEBHOOK_SECRET, hook.headers['x-signature'], hook.rawBody).ok).toBe(true);
      expect(hook.event.data.object).toEqual(reversed);
      await sleep(100);
      expect(hooksFor(body.reference)).toHaveLength(2);
    });

    it('works from metadata.sandbox_scenario too, and never reverses a failed deposit', async () => {
      const scripted = depositBody({ metadata: { sandbox_scenario: { scenario: 'settle', callback_delay_ms: 10, reverse_after_ms: 30 } } });
      const scriptedId = (await sandbox.submitDeposit(scripted)).body.id;
      await vi.waitFor(async () => expect((await depositOf(scriptedId)).status).toBe('reversed'), waitOpts);

      const failing = depositBody();
      await sandbox.setScenario(failing.reference, { scenario: 'never_callback', outcome: 'fail', reverse_after_ms: 10 });
      const failingId = (await sandbox.submitDeposit(failing)).body.id;
      await vi.waitFor(async () => expect((await depositOf(failingId)).status).toBe('failed'), waitOpts);
      await sleep(100);
      expect((await depositOf(failingId)).status).toBe('failed');
    });

    it('duplicate_callback: the reversal is delivered twice under one event id, plus a distinct id when asked', async () => {
      const body = depositBody();
      await sandbox.setScenario(body.reference, { scenario: 'duplicate_callback', also_distinct_id: true, reverse_after_ms: 20 });
      await sandbox.submitDeposit(body);
      await vi.waitFor(() => expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(3), waitOpts);
      const [first, second, third] = hooksFor(body.reference, 'deposit.reversed');
      expect(second!.event.id).toBe(first!.event.id);
      expect(second!.rawBody).toBe(first!.rawBody);
      expect(third!.event.id).not.toBe(first!.event.id);
      expect({ ...third!.event, id: first!.event.id }).toEqual(first!.event);
      for (const hook of [first, second, third]) expect(verifyWebhookSignature(WEBHOOK_SECRET, hook!.headers['x-signature'], hook!.rawBody).ok).toBe(true);
      expect(hooksFor(body.reference, 'deposit.succeeded')).toHaveLength(3);
    });

    it('never_callback: the reversal shows in the status, but no webhook is sent', async () => {
      const body = depositBody({ metadata: { sandbox_scenario: { scenario: 'never_callback', reverse_after_ms: 20 } } });
      const id = (await sandbox.submitDeposit(body)).body.id;
      await vi.waitFor(async () => expect((await depositOf(id)).status).toBe('reversed'), waitOpts);
      await sleep(100);
      expect(hooksFor(body.reference)).toHaveLength(0);
      expect(await sandbox.events(body.reference)).toEqual([]);
    });

    it('a reversal by hand before the scripted one supersedes it', async () => {
      const body = depositBody();
      await sandbox.setScenario(body.reference, { scenario: 'settle', reverse_after_ms: 250 });
      const id = (await sandbox.submitDeposit(body)).body.id;
      await vi.waitFor(async () => expect((await depositOf(id)).status).toBe('succeeded'), waitOpts);
      expect((await reverse(id, { reason: 'fraud' })).body.reversal_reason).toBe('fraud');
      await sleep(400);
      expect((await depositOf(id)).reversal_reason).toBe('fraud');
      expect(hooksFor(body.reference, 'deposit.reversed')).toHaveLength(1);
    });

    it('is refused where it cannot apply: on payouts, and on scenarios that never succeed by themselves', async () => {
      const payout = await sandbox.submitPayout(payoutBody({ metadata: { sandbox_scenario: { scenario: 'settle', reverse_after_ms: 10 } } }));
      expect([payout.status, payout.body.error.code]).toEqual([400, 'invalid_scenario']);
      for (const scenario of ['fail', 'stay_pending', 'reject']) {
        const res = await sandbox.setScenario(depositBody().reference, { scenario, reverse_after_ms: 10 });
        expect(res.status, scenario).toBe(400);
      }
      expect((await sandbox.setScenario(depositBody().reference, { scenario: 'settle', reverse_after_ms: -1 })).status).toBe(400);

      // Registered for a reference a pending payout already uses: not applied to the payout.
      const pending = payoutBody({ metadata: { sandbox_scenario: 'stay_pending' } });
      const pendingId = (await sandbox.submitPayout(pending)).body.id;
      const put = await sandbox.setScenario(pending.reference, { scenario: 'settle', reverse_after_ms: 10 });
      expect(put.body.applied_to).toEqual([]);
      expect(put.body.not_applied).toEqual([{ id: pendingId, message: 'reverse_after_ms is for deposits only' }]);
    });
  });

  it('the settlement report lists a reversed deposit as reversed, with reversed_at, also in a window holding only the reversal', async () => {
    const since = new Date().toISOString();
    const kept = await succeededDeposit();
    const charged = await succeededDeposit();
    await sleep(5); // the reversal strictly after the success, for the windows below
    const reversed = (await reverse(charged.id)).body;
    const until = new Date(Date.now() + 1).toISOString();
    const report = async (from: string, to: string) => {
      const res = await sandbox.get(`/v1/reports/settlements?since=${encodeURIComponent(from)}&until=${encodeURIComponent(to)}`);
      expect(res.status).toBe(200);
      return new Map<string, any>(res.body.items.map((item: { id: string }) => [item.id, item]));
    };

    const byId = await report(since, until);
    expect(byId.get(charged.id)).toEqual({
      id: charged.id,
      kind: 'deposit',
      reference: charged.body.reference,
      amount: charged.body.amount,
      status: 'reversed',
      settled_at: reversed.succeeded_at,
      reversed_at: reversed.reversed_at,
      reversal_reason: 'chargeback',
    });
    expect(byId.get(kept.id)).toEqual({
      id: kept.id,
      kind: 'deposit',
      reference: kept.body.reference,
      amount: kept.body.amount,
      status: 'succeeded',
      settled_at: (await depositOf(kept.id)).succeeded_at,
    });

    // A window after its success, holding only the reversal, still lists it (and not the deposit that only succeeded).
    const onlyReversal = await report(new Date(Date.parse(reversed.succeeded_at) + 1).toISOString(), until);
    expect(onlyReversal.get(charged.id)).toMatchObject({ status: 'reversed', reversed_at: reversed.reversed_at, settled_at: reversed.succeeded_at });
    expect(onlyReversal.has(kept.id)).toBe(false);
    // A window ending before the reversal lists the deposit for its success (as it is now: reversed).
    const onlySuccess = await report(since, reversed.reversed_at);
    expect(onlySuccess.get(charged.id)?.status).toBe('reversed');
  });
});

describe('sandbox deposit reversals across a restart', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a scripted reversal that falls due while the sandbox is down is played, once, after it starts', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const schema = sandboxSchema();
    const first = await startSandbox({ webhookUrl: receiver.url, schema });
    let firstOpen = true;
    cleanups.push(async () => firstOpen && first.close());
    const body = depositBody({ metadata: { sandbox_scenario: { scenario: 'settle', callback_delay_ms: 10, reverse_after_ms: 300 } } });
    const id = (await first.submitDeposit(body)).body.id;
    await vi.waitFor(() => expect(receiver.forReference(body.reference).map((h) => h.event.type)).toEqual(['deposit.succeeded']), waitOpts);
    firstOpen = false;
    await first.close();

    await sleep(400);
    expect(receiver.forReference(body.reference)).toHaveLength(1);
    const second = await startSandbox({ webhookUrl: receiver.url, schema });
    cleanups.push(() => second.close());
    await vi.waitFor(() => expect(receiver.forReference(body.reference).map((h) => h.event.type)).toEqual(['deposit.succeeded', 'deposit.reversed']), waitOpts);
    expect((await second.get(`/v1/deposits/${id}`)).body).toMatchObject({ status: 'reversed', reversal_reason: 'chargeback' });
    await sleep(150);
    expect(receiver.forReference(body.reference)).toHaveLength(2);
  });
});
