import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

const STAFF_REASON = 'internal: AML case 4711, do not tell customer';

describe('staff text stays with staff; a saga that cannot answer is shown from the read model or refused with 503', () => {
  let stack: SagaStack;
  let staff: string;
  beforeAll(async () => {
    stack = await startSagaStack({ FOUR_EYES_ACTIONS: 'none' }); // staff resolve alone here; four eyes: test/ops/four-eyes.test.ts
    staff = `Bearer ${await signToken({ sub: 'finance-7', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const staffPost = (path: string, body: unknown) =>
    fetch(`${stack.apiUrl}${path}`, { method: 'POST', headers: { authorization: staff, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it("a freeze's staff reason is not in the player's refusal", async () => {
    const accountId = await stack.fundedAccount(5_000);
    expect((await staffPost(`/v1/ops/accounts/${accountId}/freeze`, { reason: STAFF_REASON })).status).toBe(200);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 1_000), uniqueId('key'), player);
    expect(res.status).toBe(422);
    expect(res.json.code).toBe('ACCOUNT_NOT_ACTIVE');
    expect(res.text).not.toContain('AML');
    expect(res.text).not.toContain('do not tell');
    // Its timeline, as the player reads it, holds the code only.
    const view = await stack.getPayout(res.json.payout_id, player);
    expect(JSON.stringify(view)).not.toContain('AML');
    expect(view.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'DECLINED', note: 'ACCOUNT_NOT_ACTIVE' });
  });

  it("a staff resolve note is in the staff view of the timeline, never in the player's", async () => {
    const accountId = await stack.fundedAccount(5_000);
    const res = await stack.postPayout(payoutRequest(accountId, 1_000, 'sandbox:stay_pending'), uniqueId('key'));
    const payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);
    const resolved = await staffPost(`/v1/ops/payouts/${payoutId}/resolve`, { outcome: 'settle', reason: STAFF_REASON });
    expect(resolved.status).toBe(200);
    expect(JSON.stringify(await resolved.json())).toContain(STAFF_REASON); // staff's own answer

    const player = await stack.playerAuth(accountId);
    for (const reader of [player, stack.service]) {
      const seen = await stack.getPayout(payoutId, reader);
      expect(seen.status).toBe('SETTLED');
      expect(JSON.stringify(seen)).not.toContain('AML');
      expect(JSON.stringify(seen)).not.toContain('finance-7');
      expect(seen.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'SETTLED', note: 'resolved_by_staff' });
    }
    const forStaff = await stack.getPayout(payoutId, staff);
    expect(forStaff.timeline.at(-1)).toMatchObject({ status: 'SETTLED', note: 'resolved_by_staff', staff_note: `resolved by staff:finance-7: ${STAFF_REASON}` });
  });

  it('while its workflow task fails, GET answers from the read model, staff resolve is 503 SAGA_UNAVAILABLE, and both are counted', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 700, 'sandbox:stay_pending'), uniqueId('key'));
    const payoutId = res.json.payout_id as string;
    await stack.waitForStatus(payoutId, ['SUBMITTED']);
    // A defect: a signal the saga's code cannot handle (it throws), so every later workflow task fails.
    await stack.temporal.workflow.getHandle(payoutId).signal('providerEvent', null);
    for (const giveUpAt = Date.now() + 20_000; ; await sleep(200)) {
      const { raw } = await stack.temporal.workflow.getHandle(payoutId).describe();
      if (Number(raw.pendingWorkflowTask?.attempt ?? 0) > 1) break; // failed, and being retried
      if (Date.now() > giveUpAt) throw new Error('the workflow task never failed');
    }

    const read = await stack.getPayout(payoutId);
    expect(read).toMatchObject({ payout_id: payoutId, status: 'SUBMITTED', amount: { minor_units: 700, currency: 'EUR' }, cancellable: false });
    expect(read.timeline).toEqual([{ at: expect.any(String), status: 'SUBMITTED', note: 'read_model' }]);

    const started = Date.now();
    const resolve = await staffPost(`/v1/ops/payouts/${payoutId}/resolve`, { outcome: 'fail', reason: 'provider confirmed by phone' });
    expect(resolve.status).toBe(503);
    expect(((await resolve.json()) as { code: string }).code).toBe('SAGA_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(20_000);

    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/saga_unavailable_total\{operation="query",service="api"\} [1-9]/);
    expect(metrics).toMatch(/saga_unavailable_total\{operation="staff_resolve",service="api"\} 1/);
    expect(await stack.transfersOf(payoutId)).toEqual([{ kind: 'hold', amount: 700 }]);
    // Clean up: the hold goes with the terminated saga (the ledger must balance for afterAll).
    await stack.temporal.workflow.getHandle(payoutId).terminate('test over');
  });

  it('a deposit whose credit the ledger refuses shows as stuck, not as pending', async () => {
    const accountId = await stack.fundedAccount(0); // an EUR account
    const depositId = `dp_${randomBytes(16).toString('hex')}`;
    // Started past the API's checks: the provider takes GBP that the EUR ledger account cannot be credited with.
    const handle = await stack.temporal.workflow.start('depositSaga', {
      workflowId: depositId,
      taskQueue: stack.config.TEMPORAL_TASK_QUEUE,
      args: [{ depositId, accountId, amount: { minor_units: 900, currency: 'GBP' }, provider: 'sandbox', fingerprint: 'x', requestedAt: new Date().toISOString(), timings: { pollInitialMs: 400, pollMaxMs: 1500, stuckAfterMs: 60_000 } }],
    });
    await expect(handle.result()).rejects.toThrow();
    const { rows } = await stack.pool.query<{ status: string; stuck: boolean }>('SELECT status, stuck FROM deposits WHERE deposit_id = $1', [depositId]);
    expect(rows).toEqual([{ status: 'PENDING', stuck: true }]);
    const seen = await stack.getDeposit(depositId);
    expect(seen).toMatchObject({ stuck: true });
    expect(seen.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'PENDING', note: 'credit_refused' });
    expect(await stack.depositTransfersOf(depositId)).toEqual([]);
  });
});
