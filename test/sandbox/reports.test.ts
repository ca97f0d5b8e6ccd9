import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { depositBody, payoutBody, startReceiver, startSandbox, wallet, type Receiver, type Sandbox } from '../support/sandbox';

const waitOpts = { timeout: 3_000, interval: 10 };

describe('sandbox settlement report', () => {
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

  const report = (since: string, until?: string) =>
    sandbox.get(`/v1/reports/settlements?since=${encodeURIComponent(since)}${until ? `&until=${encodeURIComponent(until)}` : ''}`);

  it('lists everything that reached a final state in the window, with returns, and nothing pending', async () => {
    const since = new Date().toISOString();
    const settled = payoutBody();
    const failed = payoutBody({ destination: wallet('sandbox:fail:account_closed') });
    const returned = payoutBody();
    const pending = payoutBody({ destination: wallet('sandbox:stay_pending') });
    const deposit = depositBody();
    await sandbox.setScenario(returned.reference, { scenario: 'return_after_settlement', return_delay_ms: 100 });
    const ids = {
      settled: (await sandbox.submitPayout(settled)).body.id,
      failed: (await sandbox.submitPayout(failed)).body.id,
      returned: (await sandbox.submitPayout(returned)).body.id,
      pending: (await sandbox.submitPayout(pending)).body.id,
      deposit: (await sandbox.submitDeposit(deposit)).body.id,
    };
    await vi.waitFor(async () => expect((await sandbox.get(`/v1/payouts/${ids.returned}`)).body.status).toBe('returned'), waitOpts);
    const until = new Date(Date.now() + 1).toISOString();

    const res = await report(since, until);
    expect(res.status).toBe(200);
    const byId = new Map(res.body.items.map((item: { id: string }) => [item.id, item]));
    expect(byId.size).toBe(4);
    expect(byId.has(ids.pending)).toBe(false);
    expect(byId.get(ids.settled)).toMatchObject({ kind: 'payout', reference: settled.reference, amount: settled.amount, status: 'settled' });
    expect(byId.get(ids.failed)).toMatchObject({ kind: 'payout', status: 'failed', failure_code: 'account_closed' });
    expect(byId.get(ids.returned)).toMatchObject({ kind: 'payout', status: 'returned', return_reason: 'account_closed', returned_at: expect.any(String) });
    expect(byId.get(ids.deposit)).toMatchObject({ kind: 'deposit', reference: deposit.reference, amount: deposit.amount, status: 'succeeded' });
    for (const item of res.body.items) expect(item.settled_at >= since && item.settled_at < until).toBe(true);

    // A window holding only the return still lists the returned payout (and nothing settled before it).
    const returnedPayout = (await sandbox.get(`/v1/payouts/${ids.returned}`)).body;
    const afterSettlement = new Date(Date.parse(returnedPayout.settled_at) + 1).toISOString();
    const onlyReturn = await report(afterSettlement, until);
    expect(onlyReturn.body.items.map((i: { id: string }) => i.id)).toContain(ids.returned);
    expect(onlyReturn.body.items.map((i: { id: string }) => i.id)).not.toContain(ids.settled);

    const empty = await report(until);
    expect(empty.body.items.filter((i: { id: string }) => Object.values(ids).includes(i.id))).toEqual([]);
  });

  it('refuses a malformed or inverted window', async () => {
    expect((await sandbox.get('/v1/reports/settlements')).status).toBe(400);
    expect((await report('yesterday')).status).toBe(400);
    const inverted = await report('2030-01-02T00:00:00Z', '2030-01-01T00:00:00Z');
    expect(inverted.status).toBe(400);
    expect(inverted.body.error.code).toBe('invalid_request');
  });
});
