import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../lib/tokens';
import { sleep } from '../../lib/wait';
import { recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

type Answer = { status: number; json: any };

async function staffTokens(stack: SagaStack, ...names: string[]): Promise<Record<string, string>> {
  const tokens: Record<string, string> = {};
  for (const name of names) tokens[name] = `Bearer ${await signToken({ sub: name, role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  return tokens;
}

async function post(url: string, authorization: string, body: unknown): Promise<Answer> {
  const res = await fetch(url, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as any };
}

describe('payout review (defaults: above 2,000 EUR reviewed, above 5,000 EUR by two staff members)', () => {
  let stack: SagaStack;
  let staff: Record<string, string>;
  beforeAll(async () => {
    stack = await startSagaStack();
    staff = await staffTokens(stack, 'alice', 'bob');
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  const review = (payoutId: string, who: string, body: unknown) => post(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/review`, staff[who]!, body);
  const auditOf = async (payoutId: string) => (await stack.pool.query<{ actor: string; action: string; outcome: string }>('SELECT actor, action, outcome FROM staff_audit_log WHERE target = $1 ORDER BY id', [payoutId])).rows.map((r) => [r.actor, r.action, r.outcome]);
  const visible = async (query: string, payoutId: string) => {
    for (let i = 0; i < 50; i++) {
      const listed = (await (await fetch(`${stack.apiUrl}/v1/ops/payouts?${query}`, { headers: { authorization: staff.alice! } })).json()) as { items: { payout_id: string; status?: string }[] };
      const found = listed.items.find((item) => item.payout_id === payoutId);
      if (found) return found;
      await sleep(200); // visibility is eventually consistent
    }
    return undefined;
  };

  it('a payout above the threshold is held and waits in PENDING_REVIEW; approved, it is paid; at or below it, it is not reviewed', async () => {
    const accountId = await stack.fundedAccount(1_000_000);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 250_000), uniqueId('key'), player);
    expect([res.status, res.json.status]).toEqual([201, 'PENDING_REVIEW']);
    const payoutId: string = res.json.payout_id;
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 750_000, held: 250_000 });
    expect(await visible('status=PENDING_REVIEW', payoutId)).toMatchObject({ status: 'PENDING_REVIEW' });
    const forPlayer = await stack.getPayout(payoutId, player);
    expect(forPlayer).toMatchObject({ status: 'PENDING_REVIEW', cancellable: true });
    expect(forPlayer.review).toBeUndefined();
    expect(forPlayer.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'PENDING_REVIEW', note: 'pending_review' });
    expect((await stack.getPayout(payoutId, staff.alice)).review).toEqual({ reason: 'amount', dual_approval: false });
    // Nothing has reached the provider.
    expect((await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).status).toBe(404);

    const approved = await review(payoutId, 'alice', { decision: 'approve', reason: 'source of funds documented' });
    expect(approved.status).toBe(200);
    expect(approved.json.timeline.at(-1)).toMatchObject({ status: 'HELD', note: 'review_approved', staff_note: 'approved at review by staff:alice: source of funds documented' });
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect((await review(payoutId, 'bob', { decision: 'reject', reason: 'too late' })).json.code).toBe('PAYOUT_NOT_REVIEWABLE');
    expect(await auditOf(payoutId)).toEqual([
      ['staff:alice', 'review:approve', 'applied'],
      ['staff:bob', 'review:reject', 'refused'],
    ]);
    await recordHistory(stack.temporal, 'payout-review-approved', payoutId);

    const small = await stack.postPayout(payoutRequest(accountId, 200_000), uniqueId('key'), player);
    expect([small.status, small.json.status]).toEqual([201, 'HELD']);
    await stack.waitForStatus(small.json.payout_id, ['SETTLED']);
  });

  it('rejected at review: the hold is voided, the balance restored, DECLINED with the reviewer\'s code; the player sees the code only', async () => {
    const accountId = await stack.fundedAccount(400_000);
    const player = await stack.playerAuth(accountId);
    const res = await stack.postPayout(payoutRequest(accountId, 300_000), uniqueId('key'), player);
    expect(res.json.status).toBe('PENDING_REVIEW');
    const rejected = await review(res.json.payout_id, 'bob', { decision: 'reject', reason: 'deposits from a third-party card', reason_code: 'source_of_funds' });
    expect(rejected.json).toMatchObject({ status: 'DECLINED', decline_code: 'source_of_funds' });
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 400_000, held: 0, posted: 400_000 });
    const forPlayer = await stack.getPayout(res.json.payout_id, player);
    expect(forPlayer.timeline.at(-1)).toEqual({ at: expect.any(String), status: 'DECLINED', note: 'source_of_funds' });
    expect((await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${res.json.payout_id}`)).status).toBe(404);
    await recordHistory(stack.temporal, 'payout-review-rejected', res.json.payout_id);
  });

  it('above the dual-approval threshold the reviewer cannot approve alone: a second, different staff member approves; both in the audit log', async () => {
    const accountId = await stack.fundedAccount(1_000_000);
    const res = await stack.postPayout(payoutRequest(accountId, 600_000), uniqueId('key'));
    const payoutId: string = res.json.payout_id;
    expect((await stack.getPayout(payoutId, staff.alice)).review).toEqual({ reason: 'amount', dual_approval: true });

    const requested = await review(payoutId, 'alice', { decision: 'approve', reason: 'VIP, verified by phone' });
    expect(requested.status).toBe(202);
    expect(requested.json).toMatchObject({ action: 'payout_review', target: payoutId, status: 'pending', requested_by: 'staff:alice' });
    const own = await post(`${stack.apiUrl}/v1/ops/approvals/${requested.json.approval_id}`, staff.alice!, { decision: 'approve', reason: 'I checked' });
    expect([own.status, own.json.code]).toEqual([403, 'APPROVER_IS_REQUESTER']);
    expect((await stack.getPayout(payoutId)).status).toBe('PENDING_REVIEW');

    const approved = await post(`${stack.apiUrl}/v1/ops/approvals/${requested.json.approval_id}`, staff.bob!, { decision: 'approve', reason: 'second check done' });
    expect(approved.json).toMatchObject({ status: 'approved', decided_by: 'staff:bob', result: { status: 'HELD' } });
    expect(approved.json.result.timeline.at(-1)).toMatchObject({ note: 'review_approved', staff_note: 'approved at review by staff:alice, approved by staff:bob: VIP, verified by phone' });
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    expect(await auditOf(payoutId)).toEqual([
      ['staff:alice', 'review:approve', 'requested'],
      ['staff:alice', 'approval:approve', 'refused'],
      ['staff:bob', 'approval:approve', 'applied'],
    ]);
    await recordHistory(stack.temporal, 'payout-review-dual-approved', payoutId);
  });

  it('a payout in review counts against the daily limit: the next one over it is declined, not queued for review too', async () => {
    const accountId = await stack.fundedAccount(1_000_000);
    const limits = await fetch(`${stack.apiUrl}/v1/ops/accounts/${accountId}/limits`, {
      method: 'PUT',
      headers: { authorization: staff.alice!, 'content-type': 'application/json' },
      body: JSON.stringify({ payout_max: { minor_units: 300_000, currency: 'EUR' }, payout_daily_max: { minor_units: 300_000, currency: 'EUR' }, reason: 'daily cap for this test' }),
    });
    expect(limits.status).toBe(200);
    const first = await stack.postPayout(payoutRequest(accountId, 250_000), uniqueId('key'));
    expect(first.json.status).toBe('PENDING_REVIEW');
    const second = await stack.postPayout(payoutRequest(accountId, 250_000), uniqueId('key'));
    expect([second.status, second.json.code]).toEqual([422, 'LIMIT_EXCEEDED']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ held: 250_000 });
    await review(first.json.payout_id, 'bob', { decision: 'reject', reason: 'test cleanup' });
  });

  it('approved days later, a payout whose account was frozen since is not paid: DECLINED, its hold voided', async () => {
    const accountId = await stack.fundedAccount(300_000);
    const res = await stack.postPayout(payoutRequest(accountId, 250_000), uniqueId('key'));
    expect(res.json.status).toBe('PENDING_REVIEW');
    expect((await post(`${stack.apiUrl}/v1/ops/accounts/${accountId}/freeze`, staff.alice!, { reason: 'fraud investigation' })).status).toBe(200);
    const approved = await review(res.json.payout_id, 'bob', { decision: 'approve', reason: 'documents fine' });
    expect(approved.json).toMatchObject({ status: 'DECLINED', decline_code: 'ACCOUNT_NOT_ACTIVE' });
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 300_000, held: 0 });
    expect((await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${res.json.payout_id}`)).status).toBe(404);
  });

  it('a rejection code is one of the neutral codes a player may see', async () => {
    const accountId = await stack.fundedAccount(300_000);
    const res = await stack.postPayout(payoutRequest(accountId, 250_000), uniqueId('key'));
    expect((await review(res.json.payout_id, 'bob', { decision: 'reject', reason: 'x', reason_code: 'suspected_aml' })).json.code).toBe('VALIDATION_FAILED');
    expect((await review(res.json.payout_id, 'bob', { decision: 'reject', reason: 'checks failed', reason_code: 'identity_verification' })).json).toMatchObject({ status: 'DECLINED', decline_code: 'identity_verification' });
  });

  it('staff may cancel a payout in review (its hold is voided); a review then is refused', async () => {
    const accountId = await stack.fundedAccount(300_000);
    const res = await stack.postPayout(payoutRequest(accountId, 250_000), uniqueId('key'));
    const cancelled = await post(`${stack.apiUrl}/v1/ops/payouts/${res.json.payout_id}/cancel`, staff.alice!, { reason: 'player asked support' });
    expect(cancelled.json).toMatchObject({ status: 'CANCELLED' });
    expect((await stack.transfersOf(res.json.payout_id)).map((t) => t.kind)).toEqual(['hold', 'void']);
    expect((await review(res.json.payout_id, 'bob', { decision: 'approve', reason: 'fine' })).json.code).toBe('PAYOUT_NOT_REVIEWABLE');
    expect((await review(res.json.payout_id, 'bob', { decision: 'maybe', reason: 'fine' })).json.code).toBe('VALIDATION_FAILED');
  });
});

describe('payout review: limits that send to review, and the review SLA', () => {
  let stack: SagaStack;
  let staff: Record<string, string>;
  beforeAll(async () => {
    stack = await startSagaStack({ PAYOUT_LIMIT_BREACH: 'review', PAYOUT_HOURLY_MAX_COUNT: '1', PAYOUT_REVIEW_SLA_MS: '1500' });
    staff = await staffTokens(stack, 'carol');
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('over the hourly count the payout is reviewed, not declined; past the SLA it is marked stuck and still waits; approved, it is paid', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const first = await stack.postPayout(payoutRequest(accountId, 1_000), uniqueId('key'));
    expect(first.json.status).toBe('HELD');
    const second = await stack.postPayout(payoutRequest(accountId, 1_000), uniqueId('key'));
    expect([second.status, second.json.status]).toEqual([201, 'PENDING_REVIEW']);
    const payoutId: string = second.json.payout_id;
    expect((await stack.getPayout(payoutId, staff.carol)).review).toEqual({ reason: 'VELOCITY_LIMIT_EXCEEDED', dual_approval: false });

    let view: any;
    for (let i = 0; i < 60 && !view?.stuck; i++) {
      await sleep(100);
      view = await stack.getPayout(payoutId, staff.carol);
    }
    expect(view).toMatchObject({ status: 'PENDING_REVIEW', stuck: true });
    expect(view.timeline.at(-1)).toMatchObject({ status: 'PENDING_REVIEW', note: 'awaiting_review' });

    const approved = await post(`${stack.apiUrl}/v1/ops/payouts/${payoutId}/review`, staff.carol!, { decision: 'approve', reason: 'player confirmed the payouts' });
    expect(approved.json).toMatchObject({ status: 'HELD', stuck: false });
    await stack.waitForStatus(payoutId, ['SETTLED']);
    expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'post']);
    await stack.waitForStatus(first.json.payout_id, ['SETTLED']);
  });
});
